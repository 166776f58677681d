"""Render planes of volumes to pictures (CLI, and the server-side fallback for large series)."""

from __future__ import annotations

from carina.core.volume import Volume
from carina.render import apply_window, auto_window, encode, reformat, window_for
from carina.render.window import Window


def parse_window(text: str | None) -> Window | None:
    """``"lung"`` (a preset) or ``"-600,1500"`` (centre, width); None for automatic."""
    if text is None:
        return None
    if "," in text:
        center, width = (float(x) for x in text.split(",", 1))
        return Window(center, width)
    return window_for(text)


def render_plane(
    volume: Volume,
    *,
    plane: str = "axial",
    offset_mm: float = 0.0,
    slab_mm: float = 0.0,
    projection: str = "mean",
    window: str | Window | None = None,
    fmt: str = "png",
) -> bytes:
    """PNG/JPEG bytes of one plane or slab; CT defaults to the abdomen window."""
    section = reformat(volume, plane, offset_mm=offset_mm, slab_mm=slab_mm, projection=projection)
    chosen = parse_window(window) if isinstance(window, str) or window is None else window
    if chosen is None:
        chosen = window_for("abdomen") if volume.modality == "CT" else auto_window(section.array)
    return encode(apply_window(section.array, chosen), fmt)
