"""Frames and rendered images of stored instances, decoded with pydicom."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from carina.core.errors import DicomDecodeError, NoPixelDataError, NotFoundError
from carina.render.window import Window, apply_window


def read_dataset(data: bytes) -> Dataset:
    """The dataset of stored Part 10 bytes."""
    return pydicom.dcmread(io.BytesIO(data))


def frame_count(ds: Dataset) -> int:
    """Number of frames of an instance with pixel data."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise NoPixelDataError("the instance has no pixel data")
    return int(ds.get("NumberOfFrames") or 1)


def decode_frame(ds: Dataset, number: int) -> NDArray[Any]:
    """Frame ``number`` (1-based) decoded by pydicom, colour as RGB."""
    count = frame_count(ds)
    if not 1 <= number <= count:
        raise NotFoundError(f"frame {number} does not exist (the instance has {count})")
    try:
        return pixel_array(ds, index=number - 1)
    except Exception as exc:  # decoders raise many types
        raise DicomDecodeError(f"cannot decode frame {number}: {exc}") from exc


def frame_bytes(ds: Dataset, number: int) -> bytes:
    """Frame ``number`` as uncompressed little-endian pixel values (PS3.18 octet-stream)."""
    array = decode_frame(ds, number)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def can_convert_to_explicit_le(transfer_syntax: str) -> bool:
    """Whether :func:`to_explicit_le` handles instances stored in ``transfer_syntax``."""
    uid = UID(transfer_syntax)
    return uid == ImplicitVRLittleEndian or (uid.is_compressed and not uid.is_deflated)


def to_explicit_le(data: bytes) -> bytes:
    """Stored Part 10 bytes converted to Explicit VR Little Endian (pixel data decompressed)."""
    ds = read_dataset(data)
    try:
        if UID(ds.file_meta.TransferSyntaxUID).is_compressed:
            ds.decompress(generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    except Exception as exc:  # decoders raise many types
        raise DicomDecodeError(f"cannot convert to Explicit VR Little Endian: {exc}") from exc
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0]
    return float(value)


def _to_uint8(frame: NDArray[Any], ds: Dataset, window: tuple[float, float] | None) -> NDArray[Any]:
    values = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    if window is None:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is not None and width is not None and width >= 1:
            window = (center, width)
    if window is None:
        low, high = float(values.min()), float(values.max())
        window = ((low + high) / 2, max(high - low, 1.0))
    center, width = window
    if width < 1:
        raise ValueError("window width must be at least 1")
    out = apply_window(values, Window(center, width))
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 255 - out
    return out


def render(
    ds: Dataset,
    number: int = 1,
    *,
    window: tuple[float, float] | None = None,
    viewport: tuple[int, int] | None = None,
    media_type: str = "image/png",
    quality: int = 90,
) -> bytes:
    """Frame ``number`` rendered as PNG or JPEG, with a window (center, width) for grayscale.

    Without ``window`` the instance's first WindowCenter/WindowWidth is used, else the value range.
    ``viewport`` (columns, rows) scales the image down to fit, keeping its aspect ratio.
    """
    frame = decode_frame(ds, number)
    if int(ds.get("SamplesPerPixel") or 1) == 1:
        image = Image.fromarray(_to_uint8(frame, ds, window), mode="L")
    else:
        rgb = frame
        if rgb.dtype != np.uint8:
            top = float(rgb.max()) or 1.0
            rgb = np.clip(rgb.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if viewport is not None:
        image.thumbnail(viewport)
    buffer = io.BytesIO()
    if media_type == "image/jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()
