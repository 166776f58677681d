"""``carina models``: list, add, remove and describe the installed models."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from carina.core.errors import CarinaError, ModelError
from carina.models.installed import add_model, models_dir, remove_model, scan_models
from carina.models.spec import ModelSpec

app = typer.Typer(
    help="Installed segmentation models (<data-dir>/models/<id>/).", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(
    Path("data"), "--data-dir", envvar="CARINA_DATA_DIR", help="Data directory of Carina."
)


def _fail(exc: CarinaError) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
    return typer.Exit(2)


@app.command("list")
def list_command(
    data_dir: Path = DataDir,
    as_json: bool = typer.Option(False, "--json", help="Print the models as JSON."),
) -> None:
    """List the installed models."""
    try:
        found, broken = scan_models(models_dir(data_dir))
    except CarinaError as exc:
        raise _fail(exc) from exc
    for folder, reason in broken:
        err_console.print(f"[yellow]skipped {folder.name}:[/yellow] {reason}", soft_wrap=True)
    if as_json:
        console.print_json(json.dumps([spec.to_dict() for spec, _ in found]))
        return
    table = Table(title=f"Models in {models_dir(data_dir)}", title_justify="left")
    for col in ("id", "version", "kind", "format", "task", "labels"):
        table.add_column(col)
    for spec, _ in found:
        labels = ", ".join(lab.name for lab in spec.labels)
        table.add_row(spec.id, spec.version, spec.kind, spec.format, spec.task, labels)
    console.print(table)


@app.command("add")
def add_command(
    path: Path | None = typer.Argument(
        None,
        help="Model folder (model.json + weights), MONAI bundle or nnU-Net v2 trained-model "
        "folder (dataset.json, plans.json, fold_N/).",
    ),
    model_id: str | None = typer.Option(None, "--id", help="Install under this id."),
    totalsegmentator: str | None = typer.Option(
        None,
        "--totalsegmentator",
        metavar="TASK",
        help="Install a TotalSegmentator task (total, body, lung_vessels...) instead of a folder; "
        "TotalSegmentator and the task's weights must be installed.",
    ),
    fast: bool = typer.Option(
        False, "--fast", help="With --totalsegmentator: the task's fast (lower resolution) model."
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="With --totalsegmentator: TotalSegmentator's weights folder (its "
        "TOTALSEG_WEIGHTS_PATH; default: where TotalSegmentator looks).",
    ),
    data_dir: Path = DataDir,
) -> None:
    """Install a model folder, a MONAI bundle or an nnU-Net v2 trained-model folder (copied into
    the models directory), or a TotalSegmentator task (--totalsegmentator TASK)."""
    try:
        if totalsegmentator is not None:
            if path is not None:
                raise ModelError("give a model folder or --totalsegmentator TASK, not both")
            from carina.models.totalseg import add_totalsegmentator

            spec = add_totalsegmentator(
                models_dir(data_dir),
                totalsegmentator,
                fast=fast,
                model_id=model_id,
                weights=weights,
            )
        elif path is None:
            raise ModelError("give a model folder or --totalsegmentator TASK")
        elif fast or weights is not None:
            raise ModelError("--fast and --weights go with --totalsegmentator")
        else:
            spec = add_model(models_dir(data_dir), path, model_id=model_id)
    except CarinaError as exc:
        raise _fail(exc) from exc
    console.print(f"installed {spec.id} {spec.version} ({spec.format})")


@app.command("remove")
def remove_command(model_id: str = typer.Argument(...), data_dir: Path = DataDir) -> None:
    """Delete an installed model."""
    try:
        remove_model(models_dir(data_dir), model_id)
    except CarinaError as exc:
        raise _fail(exc) from exc
    console.print(f"removed {model_id}")


@app.command("info")
def info_command(model_id: str = typer.Argument(...), data_dir: Path = DataDir) -> None:
    """Print an installed model's spec (JSON)."""
    folder = models_dir(data_dir) / model_id
    try:
        if not (folder / "model.json").is_file():
            raise ModelError(f"no installed model {model_id!r} in {models_dir(data_dir)}")
        spec = ModelSpec.load(folder)
    except CarinaError as exc:
        raise _fail(exc) from exc
    console.print_json(json.dumps({**spec.to_dict(), "folder": str(folder)}))
