"""Burned-in text: risk flags, OCR with the ``tesseract`` binary and masking of what it finds."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from carina.core.errors import PixelCleaningError

if TYPE_CHECKING:
    from carina.deid.engine import DeidReport

SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
    }
)
RISKY_MODALITIES = frozenset({"US", "IVUS", "ES", "XC", "OT", "DOC", "SC", "GM", "OP"})
RISKY_CONVERSION_TYPES = frozenset({"WSD", "SD", "DI", "DF", "DV", "SI"})
CONFIDENT = 60.0
MASK_PAD = 3


@dataclass(frozen=True)
class TextBox:
    """A word found by OCR: pixel box (left, top, width, height), confidence 0-100, text."""

    left: int
    top: int
    width: int
    height: int
    conf: float
    text: str

    def padded(self, rows: int, cols: int, pad: int = MASK_PAD) -> tuple[int, int, int, int]:
        """(r0, r1, c0, c1) slice bounds grown by ``pad`` and clipped to the image."""
        return (
            max(0, self.top - pad),
            min(rows, self.top + self.height + pad),
            max(0, self.left - pad),
            min(cols, self.left + self.width + pad),
        )


def burned_in_risk(ds: Dataset) -> list[str]:
    """Reasons why the pixels of ``ds`` may carry burned-in identifying text (empty: none)."""
    if "PixelData" not in ds:
        return []
    reasons: list[str] = []
    burned = str(ds.get("BurnedInAnnotation", "") or "").upper()
    if burned == "YES":
        reasons.append("BurnedInAnnotation=YES")
    if burned == "NO":
        return reasons
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in RISKY_MODALITIES:
        reasons.append(f"Modality={modality}")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        reasons.append("secondary capture SOP class")
    conversion = str(ds.get("ConversionType", "") or "").upper()
    if conversion in RISKY_CONVERSION_TYPES:
        reasons.append(f"ConversionType={conversion}")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if any("SCREEN" in v for v in image_type):
        reasons.append("ImageType screen capture")
    return reasons


def tesseract_available() -> bool:
    """Whether the ``tesseract`` binary is on PATH."""
    return shutil.which("tesseract") is not None


def to_gray8(frame: NDArray[np.generic]) -> NDArray[np.uint8]:
    """A frame as 8-bit grey (colour averaged with Rec. 601 weights, range stretched)."""
    arr = frame.astype(np.float64)
    if arr.ndim == 3:
        arr = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def ocr_boxes(gray: NDArray[np.uint8], timeout: float = 60.0) -> list[TextBox]:
    """Words that tesseract finds in an 8-bit grey image (sparse-text mode, TSV output)."""
    if not tesseract_available():
        raise PixelCleaningError("the tesseract binary is needed to detect burned-in text")
    rows, cols = gray.shape
    with tempfile.TemporaryDirectory(prefix="carina-ocr-") as tmp:
        image = Path(tmp) / "frame.pgm"
        image.write_bytes(b"P5\n%d %d\n255\n" % (cols, rows) + gray.tobytes())
        try:
            proc = subprocess.run(
                ["tesseract", str(image), "stdout", "--psm", "11", "tsv"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PixelCleaningError(f"tesseract took longer than {timeout} s") from exc
    if proc.returncode != 0:
        raise PixelCleaningError(f"tesseract failed: {proc.stderr.strip()[:200]}")
    boxes: list[TextBox] = []
    for line in proc.stdout.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) != 12 or not any(ch.isalnum() for ch in parts[11]):
            continue
        left, top, width, height = (int(v) for v in parts[6:10])
        boxes.append(TextBox(left, top, width, height, float(parts[10]), parts[11].strip()))
    return boxes


def _frames(arr: NDArray[np.generic], ds: Dataset) -> NDArray[np.generic]:
    """Pixel array with a leading frame axis."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return arr if frames > 1 else arr[np.newaxis, ...]


def _sample_frames(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1})


def find_text(ds: Dataset) -> list[TextBox]:
    """OCR the first, middle and last frame of ``ds``; the union of the words found."""
    frames = _frames(ds.pixel_array, ds)
    found: list[TextBox] = []
    for i in _sample_frames(frames.shape[0]):
        found.extend(ocr_boxes(to_gray8(frames[i])))
    return found


def mask_boxes(arr: NDArray[np.generic], boxes: list[TextBox]) -> int:
    """Fill each padded box with 0 in every frame of ``arr`` (frame axis first); in place."""
    rows, cols = arr.shape[1], arr.shape[2]
    for box in boxes:
        r0, r1, c0, c1 = box.padded(rows, cols)
        arr[:, r0:r1, c0:c1, ...] = 0
    return len(boxes)


def clean_pixel_data(ds: Dataset, report: DeidReport) -> None:
    """Detect burned-in text, black it out, re-encode uncompressed and verify by OCR again.

    BurnedInAnnotation becomes NO only when a second OCR pass finds no confident word left;
    low-confidence words (masked too) and any residue are added to ``report.review``.
    """
    if "PixelData" not in ds:
        return
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable data
        raise PixelCleaningError(f"cannot decode the pixel data: {exc}") from exc
    arr = np.array(_frames(pixels, ds), copy=True)
    boxes = find_text(ds)
    report.masked_boxes = mask_boxes(arr, boxes)
    report.boxes.extend(boxes)
    for box in boxes:
        if box.conf < CONFIDENT:
            report.review.append(
                f"low-confidence text {box.text!r} ({box.conf:.0f}) at "
                f"x={box.left} y={box.top} w={box.width} h={box.height}, masked"
            )
    _store(ds, arr)
    residue = [b for b in find_text(ds) if b.conf >= CONFIDENT]
    if residue:
        report.masked_boxes += mask_boxes(arr, residue)
        report.boxes.extend(residue)
        _store(ds, arr)
        residue = [b for b in find_text(ds) if b.conf >= CONFIDENT]
    if residue:
        report.review.append(
            "text still readable after masking: " + ", ".join(repr(b.text) for b in residue)
        )
        ds.BurnedInAnnotation = "YES"
    else:
        ds.BurnedInAnnotation = "NO"
        report.pixels_cleaned = True


def _store(ds: Dataset, arr: NDArray[np.generic]) -> None:
    """Write ``arr`` (frame axis first) back as native little-endian pixel data."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    data = arr if frames > 1 else arr[0]
    dtype = data.dtype.newbyteorder("<")
    ds.PixelData = np.ascontiguousarray(data, dtype=dtype).tobytes()
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        ds.PlanarConfiguration = 0
    ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
