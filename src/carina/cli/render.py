"""``carina render``: one plane or slab of an image as PNG/JPEG."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from carina.core.errors import CarinaError
from carina.services.images import load_image
from carina.services.render import render_plane

console = Console()
err_console = Console(stderr=True)


def render_command(
    image: Path = typer.Argument(..., help="Image: DICOM folder/file/ZIP or NIfTI/NRRD/MHA."),
    output: Path = typer.Argument(..., help="Output picture (.png, .jpg)."),
    plane: str = typer.Option("axial", "--plane", help="axial, coronal or sagittal."),
    offset: float = typer.Option(
        0.0, "--offset", help="Distance from the centre along the normal (mm)."
    ),
    slab: float = typer.Option(0.0, "--slab", help="Slab thickness (mm); 0 for a thin plane."),
    projection: str = typer.Option("mean", "--projection", help="max (MIP), min (MinIP) or mean."),
    window: str | None = typer.Option(
        None, "--window", help="Preset (lung, bone, abdomen, ...) or CENTER,WIDTH."
    ),
    series: str | None = typer.Option(None, "--series", help="SeriesInstanceUID (prefix)."),
) -> None:
    """Render a plane (MPR) or slab (MIP/MinIP/average) in radiological orientation."""
    try:
        volume = load_image(image, series_uid=series)
        data = render_plane(
            volume,
            plane=plane,
            offset_mm=offset,
            slab_mm=slab,
            projection=projection,
            window=window,
            fmt=output.suffix or ".png",
        )
        output.write_bytes(data)
    except (CarinaError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from exc
    console.print(f"wrote {output}", soft_wrap=True)
