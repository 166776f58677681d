"""``carina export seg|rtstruct|mesh|slicer``: label maps as DICOM SEG, RTSTRUCT, surface meshes or
3D Slicer segmentations."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from carina.core.errors import CarinaError
from carina.services.export import export_mesh, export_rtstruct, export_seg, export_slicer

app = typer.Typer(
    help="Export label maps as DICOM SEG, RTSTRUCT, surface meshes or 3D Slicer segmentations.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


@app.command("seg")
def seg_command(
    labels: Path = typer.Argument(..., help="Label map file (NIfTI/NRRD/MHA)."),
    series: Path = typer.Argument(..., help="The DICOM series it segments (folder, file, ZIP)."),
    output: Path = typer.Argument(..., help="Output SEG file (.dcm)."),
    names: Path | None = typer.Option(None, "--names", help="JSON label set naming the values."),
    seg_type: str = typer.Option("labelmap", "--type", help="labelmap or binary."),
    algorithm: str | None = typer.Option(
        None, "--algorithm", help="Model or tool that produced it (omit for manual)."
    ),
    algorithm_version: str = typer.Option("1", "--algorithm-version"),
    series_uid: str | None = typer.Option(None, "--series", help="SeriesInstanceUID (prefix)."),
) -> None:
    """Write a DICOM SEG that references the source series."""
    try:
        out = export_seg(
            labels,
            series,
            output,
            names=names,
            seg_type=seg_type.upper(),
            algorithm=algorithm,
            algorithm_version=algorithm_version,
            series_uid=series_uid,
        )
    except (CarinaError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(f"wrote {out}", soft_wrap=True)


@app.command("rtstruct")
def rtstruct_command(
    labels: Path = typer.Argument(..., help="Label map file (NIfTI/NRRD/MHA)."),
    series: Path = typer.Argument(..., help="The DICOM series it outlines (folder, file, ZIP)."),
    output: Path = typer.Argument(..., help="Output RT Structure Set (.dcm)."),
    names: Path | None = typer.Option(None, "--names", help="JSON label set naming the values."),
    algorithm: str | None = typer.Option(
        None, "--algorithm", help="Model or tool that produced it (omit for manual)."
    ),
    series_uid: str | None = typer.Option(None, "--series", help="SeriesInstanceUID (prefix)."),
) -> None:
    """Write an RTSTRUCT: one ROI per label, closed planar contours per slice on the series."""
    try:
        out = export_rtstruct(
            labels, series, output, names=names, algorithm=algorithm, series_uid=series_uid
        )
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(f"wrote {out}", soft_wrap=True)


@app.command("mesh")
def mesh_command(
    labels: Path = typer.Argument(..., help="Label map file (NIfTI/NRRD/MHA)."),
    output: Path = typer.Argument(..., help="Output mesh (.stl, .obj, .ply, .glb)."),
    names: Path | None = typer.Option(None, "--names", help="JSON label set naming the values."),
    label: list[str] | None = typer.Option(None, "--label", help="Label name or value (repeat)."),
    smoothing: int = typer.Option(0, "--smooth", help="Taubin smoothing iterations."),
    max_faces: int | None = typer.Option(None, "--max-faces", help="Decimate to this many faces."),
) -> None:
    """Write surface meshes in patient coordinates (mm) for 3-D viewing or printing."""
    try:
        out = export_mesh(
            labels, output, names=names, select=label, smoothing=smoothing, max_faces=max_faces
        )
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(f"wrote {out}", soft_wrap=True)


@app.command("slicer")
def slicer_command(
    labels: Path = typer.Argument(..., help="Label map file (NIfTI/NRRD/MHA)."),
    output: Path = typer.Argument(..., help="Output segmentation (.seg.nrrd)."),
    names: Path | None = typer.Option(None, "--names", help="JSON label set naming the values."),
) -> None:
    """Write a 3D Slicer segmentation: one segment per label, with its name, colour and code."""
    try:
        out = export_slicer(labels, output, names=names)
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(f"wrote {out}", soft_wrap=True)
