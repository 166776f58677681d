"""Decoding the pixel data of one DICOM object with pydicom (and its pylibjpeg plugins)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from carina.core.errors import CarinaError, DicomDecodeError, DicomError, NoPixelDataError
from carina.dicom.files import (
    InstanceRef,
    has_pixel_data,
    open_dataset,
    read_dataset,
    sop_class_uid,
    uid_name,
)


def dataset_label(ds: Dataset) -> str:
    """A name for a dataset in messages: its file name, else its SOP instance UID."""
    name = getattr(ds, "filename", None)
    if isinstance(name, str) and name:
        return name
    return f"SOP instance {ds.get('SOPInstanceUID', '?')}"


def _sop_class_name(ds: Dataset) -> str:
    uid = sop_class_uid(ds)
    return uid_name(uid) if uid else "unknown SOP class"


def _fill_missing_transfer_syntax(ds: Dataset, label: str) -> list[str]:
    """Set the transfer syntax from the encoding actually read when the file meta lacks it."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return []
    if 0x7FE00010 in ds and ds["PixelData"].is_undefined_length:
        raise DicomDecodeError(
            f"{label}: compressed pixel data but no transfer syntax in the file meta header"
        )
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        implicit, little = True, True
    if implicit:
        ts = ImplicitVRLittleEndian
    else:
        ts = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    if meta is None:
        meta = FileMetaDataset()
        ds.file_meta = meta
    meta.TransferSyntaxUID = ts
    return [f"transfer syntax missing from the file meta header; assumed {ts.name}"]


def number_of_frames(ds: Dataset) -> int:
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1
    return max(n, 1)


def decode(ds: Dataset, label: str | None = None) -> tuple[npt.NDArray[Any], list[str]]:
    """Decoded pixels as ``(frames, rows, cols[, samples])`` in native byte order, with notes.

    Colour data is returned as pydicom returns it (YBR converted to RGB); palette colour images
    keep their indices. Raises :class:`NoPixelDataError` or :class:`DicomDecodeError`.
    """
    name = label or dataset_label(ds)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr, notes = _decode(ds, name)
        except CarinaError:
            raise
        except Exception as exc:  # header values that pydicom cannot convert
            raise DicomError(f"{name}: damaged DICOM header ({type(exc).__name__}: {exc})") from exc
    notes.extend(str(w.message) for w in caught)
    return arr, notes


def _decode(ds: Dataset, name: str) -> tuple[npt.NDArray[Any], list[str]]:
    if not has_pixel_data(ds):
        raise NoPixelDataError(
            f"{name}: no pixel data ({_sop_class_name(ds)}, modality {ds.get('Modality', '?')})"
        )
    notes = _fill_missing_transfer_syntax(ds, name)
    ts = ds.file_meta.TransferSyntaxUID
    try:
        arr = np.asarray(ds.pixel_array)
        frames = number_of_frames(ds)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except CarinaError:
        raise
    except Exception as exc:  # codec plugins and header conversions raise many types
        raise DicomDecodeError(
            f"{name}: cannot decode pixel data ({uid_name(str(ts))}): {type(exc).__name__}: {exc}"
        ) from exc
    plane_ndim = 2 if samples == 1 else 3
    if arr.ndim == plane_ndim:
        arr = arr[np.newaxis]
    if arr.ndim != plane_ndim + 1 or arr.shape[0] != frames:
        raise DicomDecodeError(
            f"{name}: decoded pixel array has shape {arr.shape}, expected {frames} frame(s) "
            f"with {samples} sample(s) per pixel"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, notes


def read_pixels(source: str | Path | Dataset | InstanceRef) -> npt.NDArray[Any]:
    """Decoded pixel data of one DICOM object, shape ``(frames, rows, cols[, samples])``.

    ``source`` is a file path, a pydicom :class:`~pydicom.dataset.Dataset` or an
    :class:`InstanceRef`. Values are stored values (no rescale applied). Every failure is raised
    as :class:`NoPixelDataError`, :class:`DicomDecodeError` or another
    :class:`~carina.core.errors.DicomError` naming the cause.
    """
    if isinstance(source, Dataset):
        return decode(source)[0]
    if isinstance(source, InstanceRef):
        ds, _ = open_dataset(source)
        return decode(ds, source.label)[0]
    label = str(source)
    try:
        with open(source, "rb") as fh:
            ds, _ = read_dataset(fh, label)
    except OSError as exc:
        raise DicomError(f"{label}: cannot open ({exc})") from exc
    return decode(ds, label)[0]
