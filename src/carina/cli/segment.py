"""``carina segment``: run a weight-free tool (or an installed model) on an image or series."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from carina.cli.progress import stage_progress
from carina.core.errors import CarinaError
from carina.models.installed import MODELS_DIRNAME
from carina.services.segment import list_tools, segment

console = Console()
err_console = Console(stderr=True)


def _print_tools(models_dir: Path | None) -> None:
    table = Table(title="Segmentation tools", title_justify="left")
    table.add_column("id", style="bold")
    table.add_column("task")
    table.add_column("modalities")
    table.add_column("labels")
    table.add_column("weights")
    for spec in list_tools(models_dir):
        table.add_row(
            spec.id,
            spec.task,
            ", ".join(spec.modalities),
            ", ".join(lab.name for lab in spec.labels),
            "yes" if spec.requires_weights else "none",
        )
    console.print(table)


def segment_command(
    source: Path | None = typer.Argument(
        None, help="DICOM series folder, file or ZIP; or a NIfTI/NRRD/MHA image."
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Label map (.nii.gz, .nrrd, .mha), Slicer segmentation (.seg.nrrd), "
        "DICOM SEG (.dcm) or RTSTRUCT (.rtstruct.dcm).",
    ),
    tool: str | None = typer.Option(None, "--tool", "-t", help="Tool id (see --list)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Installed model id (see carina models list)."
    ),
    data_dir: Path = typer.Option(
        Path("data"),
        "--data-dir",
        envvar="CARINA_DATA_DIR",
        help="Data directory holding the installed models (models/<id>/).",
    ),
    list_: bool = typer.Option(False, "--list", help="List the available tools and exit."),
    largest_component: bool = typer.Option(
        False, "--largest-component", help="Keep only the largest component of each label."
    ),
    fill_holes: bool = typer.Option(False, "--fill-holes", help="Fill holes in each label."),
    min_size: float = typer.Option(
        0.0, "--min-size", help="Drop components smaller than this many mL.", min=0.0
    ),
    series: str | None = typer.Option(
        None, "--series", help="SeriesInstanceUID (or a prefix) when the input holds several."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Segment an image with a weight-free tool or an installed model and write a label map or a
    DICOM SEG."""
    models_dir = data_dir / MODELS_DIRNAME
    if list_:
        _print_tools(models_dir)
        return
    if tool is not None and model is not None:
        err_console.print("[red]error:[/red] give --tool or --model, not both")
        raise typer.Exit(2)
    tool = tool or model
    if source is None or output is None or tool is None:
        err_console.print(
            "[red]error:[/red] give INPUT, -o OUTPUT and --tool or --model (or --list)"
        )
        raise typer.Exit(2)
    try:
        with stage_progress(not as_json) as update:
            outcome = segment(
                source,
                output,
                tool,
                largest_component=largest_component,
                fill_holes=fill_holes,
                min_size_ml=min_size,
                series_uid=series,
                progress=update,
                models_dir=models_dir,
            )
    except CarinaError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    if as_json:
        payload = {
            "output": str(outcome.output),
            "tool": outcome.tool,
            "version": outcome.version,
            "timings_s": dict(outcome.timings),
            "volumes_ml": dict(outcome.volumes_ml),
            "findings": dict(outcome.findings),
        }
        console.print_json(json.dumps(payload))
        return
    table = Table(
        title=f"{outcome.tool} {outcome.version} -> {outcome.output}", title_justify="left"
    )
    table.add_column("label")
    table.add_column("volume (mL)", justify="right")
    for name, ml in outcome.volumes_ml.items():
        table.add_row(name, f"{ml:.1f}")
    console.print(table)
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in outcome.timings.items())
    console.print(f"time: {stages}")
