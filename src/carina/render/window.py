"""Window/level (VOI LUT) to 8-bit grey, with the usual CT presets, and PNG/JPEG encoding."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from carina.core.errors import CarinaError


@dataclass(frozen=True)
class Window:
    """A linear VOI window: centre and width in the image's units (HU for CT)."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not self.width >= 1:
            raise CarinaError(f"window width must be at least 1, got {self.width}")


#: CT presets (centre, width), as commonly used by radiology viewers.
PRESETS: dict[str, Window] = {
    "abdomen": Window(40, 400),
    "soft-tissue": Window(40, 400),
    "mediastinum": Window(50, 350),
    "liver": Window(90, 150),
    "lung": Window(-600, 1500),
    "bone": Window(480, 2500),
    "brain": Window(40, 80),
}


def window_for(name_or_window: str | Window | tuple[float, float]) -> Window:
    """A preset by name, a :class:`Window`, or ``(centre, width)``."""
    if isinstance(name_or_window, Window):
        return name_or_window
    if isinstance(name_or_window, tuple):
        return Window(float(name_or_window[0]), float(name_or_window[1]))
    try:
        return PRESETS[name_or_window.lower()]
    except KeyError:
        raise CarinaError(
            f"unknown window preset {name_or_window!r}; use one of {', '.join(PRESETS)}"
        ) from None


def auto_window(values: npt.ArrayLike) -> Window:
    """A window spanning the 1st to 99th percentile (for images without a preset)."""
    arr = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(arr, [1, 99]) if arr.size else (0.0, 1.0)
    return Window((lo + hi) / 2, max(1.0, float(hi - lo)))


def apply_window(values: npt.ArrayLike, window: Window) -> npt.NDArray[np.uint8]:
    """Map values to 0..255 with the linear VOI function of DICOM PS3.3 C.11.2.1.2.1."""
    x = np.asarray(values, dtype=np.float64)
    c, w = window.center, window.width
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else np.where(x > c - 0.5, 255.0, 0.0)
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1) / 2, 255.0, y)
    out: npt.NDArray[np.uint8] = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    return out


def encode(image: npt.NDArray[Any], fmt: str = "png", quality: int = 90) -> bytes:
    """Encode an 8-bit (rows, columns[, 3]) image as PNG or JPEG."""
    fmt = fmt.lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        pil_format, options = "JPEG", {"quality": quality}
    elif fmt == "png":
        pil_format, options = "PNG", {}
    else:
        raise CarinaError(f"unsupported image encoding {fmt!r}; use png or jpeg")
    if image.dtype != np.uint8:
        raise CarinaError("only 8-bit images are encoded; apply a window first")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def resize_to_spacing(
    image: npt.NDArray[np.uint8],
    row_spacing: float,
    column_spacing: float,
    max_edge: int | None = None,
) -> npt.NDArray[np.uint8]:
    """Resample an 8-bit image so that its pixels are square (the finer spacing of the two),
    then shrink it (never enlarge) so that its longer edge is at most ``max_edge`` pixels."""
    rows, cols = image.shape[:2]
    step = min(row_spacing, column_spacing)
    height, width = rows * row_spacing / step, cols * column_spacing / step
    if max_edge is not None and max(height, width) > max_edge:
        scale = max_edge / max(height, width)
        height, width = height * scale, width * scale
    size = (max(1, round(width)), max(1, round(height)))
    if size == (cols, rows):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR)
    out: npt.NDArray[np.uint8] = np.asarray(resized, dtype=np.uint8)
    return out
