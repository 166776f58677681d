"""Validation of incoming DICOM bytes and extraction of what the catalog needs."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from carina.archive.dicomjson import instance_json
from carina.core.errors import InstanceRejected

_WARNINGS_LOCK = threading.Lock()
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_UID_CHARS = frozenset("0123456789.")


@dataclass(frozen=True)
class ParsedInstance:
    """A validated instance: the Part 10 bytes to store and its catalog attributes."""

    data: bytes
    sha256: str
    dataset_sha256: str
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient: dict[str, str]
    study: dict[str, str]
    series: dict[str, Any]
    instance: dict[str, int | None]
    metadata_json: str
    rewritten: bool = False
    warnings: tuple[str, ...] = field(default=())


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    return text.strip()[:limit]


def _date(ds: Dataset, keyword: str) -> str:
    text = _text(ds, keyword, 64)
    if len(text) == 10 and text[4] == text[7] == ".":  # ACR-NEMA style YYYY.MM.DD
        text = text.replace(".", "")
    return text if len(text) == 8 and text.isdigit() else ""


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**31) <= number < 2**31 else None


def _read(data: bytes) -> tuple[Dataset, bool]:
    """Parse ``data``; returns the dataset and whether its file meta had to be constructed."""
    try:
        return pydicom.dcmread(io.BytesIO(data)), False
    except InvalidDicomError:
        pass
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    return ds, True


def _encoding_uid(ds: Dataset) -> UID:
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _rewrite_part10(ds: Dataset, uids: dict[str, str]) -> bytes:
    """Part 10 bytes of ``ds`` with constructed file meta, in the encoding it was read in."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(uids["SOPClassUID"])
    meta.MediaStorageSOPInstanceUID = UID(uids["SOPInstanceUID"])
    meta.TransferSyntaxUID = _encoding_uid(ds)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)


def dataset_offset(data: bytes) -> int:
    """Where the dataset of Part 10 bytes starts, after preamble, prefix and file meta group."""
    if data[128:132] != b"DICM":
        return 0
    offset = 132
    while offset + 8 <= len(data) and data[offset : offset + 2] == b"\x02\x00":
        vr = data[offset + 4 : offset + 6]
        if vr in _LONG_VRS:
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
            offset += 12 + length
        else:
            length = int.from_bytes(data[offset + 6 : offset + 8], "little")
            offset += 8 + length
    return min(offset, len(data))


def _check_native_pixels(ds: Dataset, transfer_syntax: UID) -> None:
    if "PixelData" not in ds or transfer_syntax.is_compressed:
        return
    if not _int(ds, "Rows") or not _int(ds, "Columns") or not _int(ds, "BitsAllocated"):
        raise InstanceRejected("pixel data without Rows, Columns or BitsAllocated")
    expected = get_expected_length(ds, unit="bytes")
    actual = len(ds.PixelData)
    if actual < expected:
        raise InstanceRejected(f"pixel data truncated: {actual} bytes, {expected} expected")


_META_FALLBACK = {
    "SOPClassUID": "MediaStorageSOPClassUID",
    "SOPInstanceUID": "MediaStorageSOPInstanceUID",
}


def _check_uids(ds: Dataset) -> dict[str, str]:
    """The required UIDs; an empty SOP Class/Instance UID is taken from the file meta."""
    uids: dict[str, str] = {}
    meta = getattr(ds, "file_meta", None)
    for keyword in REQUIRED_UIDS:
        value = _text(ds, keyword, 1000) if keyword in ds else ""
        if not value and keyword in _META_FALLBACK and meta is not None:
            value = _text(meta, _META_FALLBACK[keyword], 1000)
            if value:
                warnings.warn(f"{keyword} is empty; using the file meta's value", stacklevel=2)
        if not value:
            raise InstanceRejected(f"missing {keyword}")
        if len(value) > 64 or not set(value) <= _UID_CHARS:
            raise InstanceRejected(f"invalid {keyword}: {value[:80]!r}")
        uids[keyword] = value
    return uids


def parse_instance(data: bytes) -> ParsedInstance:
    """Validate DICOM bytes for storage; raises :class:`InstanceRejected` with the reason.

    The bytes are stored unchanged when they are a DICOM Part 10 file with a transfer syntax in its
    file meta; a bare dataset (or a meta without transfer syntax) gets a constructed file meta.
    """
    # pydicom reports odd values as warnings; they are collected per instance. The warnings
    # filters are process-wide, hence the lock around the collecting block.
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds, rewrite = _read(data)
        except Exception as exc:  # pydicom raises many types on garbage input
            raise InstanceRejected(f"not a readable DICOM file: {exc}") from exc
        try:
            uids = _check_uids(ds)
        except InstanceRejected as exc:
            if rewrite and exc.reason.startswith("missing"):
                raise InstanceRejected(f"not a DICOM file ({exc.reason})") from exc
            raise
        except Exception as exc:
            raise InstanceRejected(f"unreadable dataset: {exc}") from exc
        sop_uid = uids["SOPInstanceUID"]
        meta = getattr(ds, "file_meta", None)
        if meta is None or "TransferSyntaxUID" not in meta:
            rewrite = True
        try:
            if rewrite:
                data = _rewrite_part10(ds, uids)
                ds = pydicom.dcmread(io.BytesIO(data))
            transfer_syntax = UID(ds.file_meta.TransferSyntaxUID)
            if len(transfer_syntax) > 64 or not set(transfer_syntax) <= _UID_CHARS:
                raise InstanceRejected(f"invalid TransferSyntaxUID {transfer_syntax[:80]!r}")
            _check_native_pixels(ds, transfer_syntax)
            study_uid = uids["StudyInstanceUID"]
            series_uid = uids["SeriesInstanceUID"]
            metadata = instance_json(ds, study_uid, series_uid, sop_uid)
            metadata["00080016"] = {"vr": "UI", "Value": [uids["SOPClassUID"]]}
            metadata["00080018"] = {"vr": "UI", "Value": [sop_uid]}
        except InstanceRejected as exc:
            raise InstanceRejected(exc.reason, sop_uid) from exc
        except Exception as exc:
            raise InstanceRejected(f"unreadable dataset: {exc}", sop_uid) from exc
    return ParsedInstance(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        dataset_sha256=hashlib.sha256(memoryview(data)[dataset_offset(data) :]).hexdigest(),
        sop_instance_uid=sop_uid,
        sop_class_uid=uids["SOPClassUID"],
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        transfer_syntax_uid=str(transfer_syntax),
        patient={
            "patient_id": _text(ds, "PatientID", 64),
            "patient_name": _text(ds, "PatientName", 324),
            "birth_date": _date(ds, "PatientBirthDate"),
            "sex": _text(ds, "PatientSex", 16),
        },
        study={
            "study_date": _date(ds, "StudyDate"),
            "study_time": _text(ds, "StudyTime", 32),
            "accession_number": _text(ds, "AccessionNumber", 64),
            "study_id": _text(ds, "StudyID", 64),
            "study_description": _text(ds, "StudyDescription", 256),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
        },
        series={
            "modality": _text(ds, "Modality", 16),
            "series_number": _int(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription", 256),
        },
        instance={
            "instance_number": _int(ds, "InstanceNumber"),
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "number_of_frames": _int(ds, "NumberOfFrames"),
        },
        metadata_json=json.dumps(metadata, separators=(",", ":")),
        rewritten=rewrite,
        warnings=tuple(str(w.message) for w in caught),
    )
