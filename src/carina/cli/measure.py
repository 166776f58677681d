"""``carina quant``: statistics of an image inside a segmentation."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from carina.cli.progress import stage_progress
from carina.core.errors import CarinaError
from carina.services.measure import quantify_files

console = Console()
err_console = Console(stderr=True)


def quant_command(
    image: Path = typer.Argument(..., help="Image: DICOM folder/file/ZIP or NIfTI/NRRD/MHA."),
    labels: Path = typer.Argument(..., help="Label map file (NIfTI/NRRD/MHA)."),
    names: Path | None = typer.Option(None, "--names", help="JSON label set naming the values."),
    components: bool = typer.Option(
        False, "--components", help="Also measure each connected component."
    ),
    min_voxels: int = typer.Option(1, "--min-voxels", help="Smallest component reported."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write the table as CSV."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the table as JSON."),
    series: str | None = typer.Option(None, "--series", help="SeriesInstanceUID (prefix)."),
    suv: bool | None = typer.Option(
        None,
        "--suv/--no-suv",
        help="PET: body-weight SUV from the DICOM header (default: when the header allows it).",
    ),
    mtv_threshold: float | None = typer.Option(
        None, "--mtv-threshold", help="PET: absolute SUV of the metabolic volume (e.g. 2.5)."
    ),
    mtv_relative: float = typer.Option(
        0.41, "--mtv-relative", help="PET: metabolic volume threshold as a fraction of SUVmax."
    ),
) -> None:
    """Volume and intensity statistics (HU for CT) per label and per connected component."""
    try:
        with stage_progress(True) as update:
            result = quantify_files(
                image,
                labels,
                label_names=names,
                components=components,
                min_component_voxels=min_voxels,
                series_uid=series,
                progress=update,
                suv=suv,
                mtv_threshold=mtv_threshold,
                mtv_relative=mtv_relative,
            )
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if csv_out:
        result.to_csv(csv_out)
    if json_out:
        json_out.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    pet = any(r.suv_peak is not None for r in result.rows)
    units = result.rows[0].units if result.rows else ""
    table = Table(title=f"{image} ({units or 'no units'})", title_justify="left")
    columns = ["label", "name", "comp.", "voxels", "volume mL", "mean", "SD", "min", "max"]
    if pet:
        columns += ["SUVpeak", "MTV mL", "SUVmean", "TLG"]
    for col in columns:
        table.add_column(col, justify="right" if col not in ("name",) else "left")
    for r in result.rows:
        cells = [
            str(r.label),
            r.name,
            str(r.component or "all"),
            str(r.voxel_count),
            f"{r.volume_ml:.3f}",
            f"{r.mean:.1f}",
            f"{r.std:.1f}",
            f"{r.minimum:g}",
            f"{r.maximum:g}",
        ]
        if pet:
            cells += [
                f"{r.suv_peak or 0:.2f}",
                f"{r.metabolic_volume_ml or 0:.2f}",
                f"{r.suv_mean or 0:.2f}",
                f"{r.total_lesion_glycolysis or 0:.1f}",
            ]
        table.add_row(*cells)
    console.print(table)
