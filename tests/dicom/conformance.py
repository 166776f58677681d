"""Shared check for one file: it loads with pydicom's own pixel values, or fails cleanly."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.uid import ImplicitVRLittleEndian

from carina.core.errors import (
    CarinaError,
    DicomDecodeError,
    NoPixelDataError,
    NotDicomError,
    UnsupportedDicomError,
)
from carina.dicom import load_series, read_pixels, scan

T = TypeVar("T")

NON_DICOM_SUFFIXES = {".md", ".txt", ".csv", ".nrrd", ".jpeg", ".json", ".icc", ".gz"}

#: SOP classes whose frames are not slices of an image volume.
UNSUPPORTED_VOLUME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
    "1.2.840.10008.5.1.4.1.1.77.1.6",  # VL Whole Slide Microscopy
}


def _is_non_dicom_name(path: Path) -> bool:
    return path.suffix.lower() in NON_DICOM_SUFFIXES or path.name == "README"


def _reference(path: Path) -> pydicom.Dataset | None:
    """The file as pydicom reads it (forced), or None when pydicom cannot parse it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            return None
    if "TransferSyntaxUID" not in ds.file_meta and ds.original_encoding == (True, True):
        # A raw dataset without file meta, read as implicit VR little endian.
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def _has_pixels(ds: pydicom.Dataset) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _frames(ds: pydicom.Dataset) -> npt.NDArray[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = np.asarray(ds.pixel_array)
    samples = int(ds.get("SamplesPerPixel", 1))
    if arr.ndim == (2 if samples == 1 else 3):
        arr = arr[np.newaxis]
    return arr


def _fg(ds: pydicom.Dataset, f: int, seq: str, keyword: str) -> Any:
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(name)
        if not groups:
            continue
        group = groups[f] if name.startswith("PerFrame") else groups[0]
        if seq in group and keyword in group[seq][0]:
            return group[seq][0][keyword].value
    return ds.get(keyword)


def _expected_slices(ds: pydicom.Dataset, raw: npt.NDArray[Any]) -> list[npt.NDArray[Any]]:
    """Each frame after the modality LUT (or palette), as pydicom computes it."""
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        return [np.asarray(apply_color_lut(fr, ds)) for fr in raw]
    if raw.ndim == 4:
        return list(raw)
    if ds.get("Modality") == "RTDOSE":
        return [fr * float(ds.DoseGridScaling) for fr in raw]
    out = []
    for f, fr in enumerate(raw):
        slope = _fg(ds, f, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _fg(ds, f, "PixelValueTransformationSequence", "RescaleIntercept")
        if "PerFrameFunctionalGroupsSequence" in ds and slope is not None:
            out.append(fr * float(slope) + float(intercept or 0))
        else:
            out.append(np.asarray(apply_modality_lut(fr, ds)))
    return out


def _attempt(fn: Callable[[], T]) -> tuple[T | None, CarinaError | None]:
    try:
        return fn(), None
    except CarinaError as exc:
        return None, exc


def check_file(
    path: Path,
    *,
    not_dicom: bool = False,
    failure: tuple[type[CarinaError], str] | None = None,
) -> None:
    """Check ``read_pixels`` and ``scan`` + ``load_series`` on one file against pydicom.

    ``not_dicom``: the file must raise :class:`NotDicomError` and be rejected by ``scan``.
    ``failure``: the expected error class of ``read_pixels`` and a fragment of its message.
    Any other error is accepted only for objects without pixel data (NoPixelDataError).
    """
    not_dicom = not_dicom or _is_non_dicom_name(path)
    ref = None if not_dicom else _reference(path)

    # 1. read_pixels
    expected: npt.NDArray[Any] | None = None
    pixels, error = _attempt(lambda: read_pixels(path))
    if error is not None:
        message = str(error)
        assert str(path) in message, message
        if not_dicom:
            assert isinstance(error, NotDicomError), message
        elif failure is not None:
            assert isinstance(error, failure[0]), message
            assert failure[1] in message
        else:
            assert ref is not None
            assert not _has_pixels(ref), f"pixel data that pydicom reads was refused: {message}"
            assert isinstance(error, NoPixelDataError), message
            assert "no pixel data" in message
    else:
        assert pixels is not None
        assert failure is None, "expected to fail but loaded"
        assert not not_dicom
        assert ref is not None
        expected = _frames(ref)
        assert pixels.shape == expected.shape
        np.testing.assert_array_equal(pixels, expected)

    # 2. scan + load_series of the single file
    result = scan(path)
    for rejected in result.rejected:
        assert rejected.reason
        assert rejected.source == str(path)
    if pixels is not None:
        assert result.rejected == [], result.rejected
    if not_dicom:
        assert [r.reason for r in result.rejected] == ["not a DICOM file"]
        return
    for info in result.series:
        loaded, error = _attempt(partial(load_series, info))
        if error is not None:
            message = str(error)
            if info.sop_class_uid in UNSUPPORTED_VOLUME_SOP_CLASSES:
                assert isinstance(error, UnsupportedDicomError), message
            elif not info.has_pixels or pixels is None:
                assert isinstance(error, NoPixelDataError | DicomDecodeError), message
            else:
                pytest.fail(f"decodable image did not load: {type(error).__name__}: {message}")
            continue
        assert loaded is not None
        assert pixels is not None
        assert info.sop_class_uid not in UNSUPPORTED_VOLUME_SOP_CLASSES
        assert ref is not None
        vol = loaded.volume
        assert expected is not None
        expected_slices = _expected_slices(ref, expected)
        assert vol.shape[2] == len(expected_slices)
        n = len(expected_slices)
        unmatched = list(range(n))
        for k in range(vol.shape[2]):
            plane = np.swapaxes(vol.array[:, :, k], 0, 1)  # back to (rows, cols[, samples])
            # Frame order or its reverse first; any other frame after that.
            candidates = sorted(unmatched, key=lambda f, k=k: min(abs(f - k), abs(n - 1 - k - f)))
            match = next(
                (
                    f
                    for f in candidates
                    if plane.shape == expected_slices[f].shape
                    and np.allclose(plane, expected_slices[f], rtol=1e-6, atol=1e-6)
                ),
                None,
            )
            assert match is not None, f"slice {k} matches no frame of the file"
            unmatched.remove(match)
        if vol.array.ndim == 4:
            assert vol.channels == 3
            assert vol.metadata["PhotometricInterpretation"] == "RGB"
        if ref.get("Modality") == "CT" and ref.get("RescaleType", "HU") == "HU":
            assert vol.metadata["units"] == "HU"
        if not ("ImagePositionPatient" in ref or "PerFrameFunctionalGroupsSequence" in ref):
            assert "no patient geometry; pixel grid only" in loaded.problems
