"""``carina info`` and ``carina convert``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from carina.cli.progress import stage_progress
from carina.core.errors import CarinaError
from carina.services.images import InspectResult, SeriesReport, convert, inspect

console = Console()
err_console = Console(stderr=True)


def _fmt(values: tuple[float, ...] | None, digits: int = 4, sep: str = " x ") -> str:
    return "-" if values is None else sep.join(f"{v:.{digits}g}" for v in values)


def _relative(source: str, root: Path) -> str:
    """``source`` relative to the folder that was scanned (ZIP members keep their ``::``)."""
    base = root if root.is_dir() else root.parent
    path, sep, member = source.partition("::")
    try:
        shown = str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        shown = path
    return shown + sep + member


def _print_report(result: InspectResult, root: Path) -> None:
    for report in result.series:
        _print_series(report)
    if result.rejected:
        table = Table(title=f"{len(result.rejected)} file(s) not read", title_justify="left")
        table.add_column("file")
        table.add_column("reason")
        for rejected in result.rejected:
            table.add_row(_relative(rejected.source, root), rejected.reason)
        console.print(table)


def _print_series(r: SeriesReport) -> None:
    title = r.series_instance_uid or r.source
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("modality", r.modality or "-")
    if r.description:
        table.add_row("description", r.description)
    if r.n_instances:
        table.add_row("instances", str(r.n_instances))
    if r.loaded:
        table.add_row("shape", "x".join(str(s) for s in r.shape or ()))
        table.add_row("spacing (mm)", _fmt(r.spacing))
        table.add_row("origin (LPS mm)", _fmt(r.origin, 6))
        table.add_row("orientation", r.orientation or "-")
        table.add_row("data type", r.dtype or "-")
        table.add_row("value range", _fmt(r.value_range, 6, sep=" .. "))
    if r.error:
        table.add_row("error", f"[red]{r.error}[/red]")
    for problem in r.problems:
        table.add_row("problem", f"[yellow]{problem}[/yellow]")
    console.print(table)


def info_command(
    path: Path = typer.Argument(..., help="DICOM folder, file or ZIP; or a NIfTI/NRRD/MHA file."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Describe the series found: modality, shape, spacing, orientation, value range, problems."""
    try:
        with stage_progress(not as_json) as update:
            result = inspect(path, progress=update)
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if as_json:
        payload = {
            "series": [asdict(r) for r in result.series],
            "rejected": [asdict(r) for r in result.rejected],
        }
        console.print_json(json.dumps(payload))
    else:
        _print_report(result, path)
    if not any(r.loaded for r in result.series):
        raise typer.Exit(1)


def convert_command(
    source: Path = typer.Argument(..., help="DICOM folder, file or ZIP; or an image file."),
    output: Path = typer.Argument(
        ..., help="Output file (.nii.gz, .nii, .nrrd, .mha) or a folder for one file per series."
    ),
    series: str | None = typer.Option(
        None, "--series", help="SeriesInstanceUID (or a prefix) of the series to convert."
    ),
    resample_irregular: bool = typer.Option(
        False,
        "--resample-irregular",
        help="Resample gantry-tilted or unevenly spaced series onto a regular grid.",
    ),
    fmt: str = typer.Option(".nii.gz", "--format", help="File format when OUTPUT is a folder."),
) -> None:
    """Convert images to NIfTI, NRRD or MetaImage (LPS geometry kept, RAS written for NIfTI)."""
    try:
        with stage_progress(True) as update:
            written = convert(
                source,
                output,
                series_uid=series,
                resample_irregular=resample_irregular,
                fmt=fmt if fmt.startswith(".") else "." + fmt,
                progress=update,
            )
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    for path in written.written:
        console.print(f"wrote {path}", soft_wrap=True)
    for uid, reason in written.skipped:
        err_console.print(f"[yellow]skipped[/yellow] {uid}: {reason}", soft_wrap=True)
