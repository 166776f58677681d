"""Finding DICOM objects in folders, single files and ZIP archives, and reading their headers.

:func:`scan` reads headers only (large values such as pixel data are deferred) and groups the
instances by SeriesInstanceUID. ZIP members are read in memory; nothing is extracted to disk.
"""

from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from carina.core.errors import CarinaError, DicomError, NotDicomError

#: SOP class of a DICOMDIR (Media Storage Directory Storage).
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

#: ZIP members larger than this (uncompressed) are not read into memory.
MAX_ZIP_MEMBER_BYTES = 2 * 1024**3

#: Values larger than this are not read while scanning headers.
_DEFER_SIZE = 4096

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloat...
_NATIVE_SYNTAXES = {
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
}


@dataclass(frozen=True)
class InstanceRef:
    """Where one DICOM object is stored, with the header fields used to sort it."""

    path: str
    member: str | None
    sop_instance_uid: str
    instance_number: int | None = None
    image_position: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int = 1

    @property
    def label(self) -> str:
        """Human-readable location: the path, or ``archive.zip::member``."""
        return f"{self.path}::{self.member}" if self.member is not None else self.path


@dataclass(frozen=True)
class Rejected:
    """A file that was not taken into any series, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class SeriesInfo:
    """One series found by :func:`scan`: identifiers, description and where its instances are."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_description: str
    sop_class_uid: str
    patient_id: str
    n_instances: int
    sources: tuple[InstanceRef, ...]
    has_pixels: bool
    series_number: int | None = None


@dataclass(frozen=True)
class ScanResult:
    """Series found under a path, and the files that were skipped with a reason."""

    series: list[SeriesInfo]
    rejected: list[Rejected]


# -- reading -------------------------------------------------------------------------------------
class Archives:
    """ZIP archives kept open while their members are read (a few at a time).

    Use as a context manager; members are read into memory, never extracted.
    """

    MAX_OPEN = 4

    def __init__(self) -> None:
        self._open: dict[str, zipfile.ZipFile] = {}

    def __enter__(self) -> Archives:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for zf in self._open.values():
            zf.close()
        self._open.clear()

    def _archive(self, path: str) -> zipfile.ZipFile:
        zf = self._open.get(path)
        if zf is None:
            if len(self._open) >= self.MAX_OPEN:
                oldest = next(iter(self._open))
                self._open.pop(oldest).close()
            zf = zipfile.ZipFile(path)
            self._open[path] = zf
        return zf

    def read(self, archive: str, member: str) -> bytes:
        """The bytes of one member; DicomError when it cannot be read or is too large."""
        try:
            zf = self._archive(archive)
            info = zf.getinfo(member)
            if info.file_size > MAX_ZIP_MEMBER_BYTES:
                raise DicomError(
                    f"{archive}::{member}: member is {info.file_size} bytes uncompressed, "
                    f"more than the {MAX_ZIP_MEMBER_BYTES} bytes read into memory"
                )
            return zf.read(info)
        except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, EOFError) as exc:
            raise DicomError(f"{archive}::{member}: cannot read ZIP member ({exc})") from exc


def _looks_like_raw_dataset(head: bytes) -> bool:
    """True when the bytes could start a DICOM dataset without preamble and file meta."""
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    group_be = int.from_bytes(head[0:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _valid_uid(value: Any) -> bool:
    return isinstance(value, str) and bool(_UID_RE.match(value)) and len(value) <= 64


def read_dataset(
    fp: BinaryIO, label: str, *, headers_only: bool = False
) -> tuple[Dataset, list[str]]:
    """Parse one DICOM object from a binary stream; return it and pydicom's warnings.

    Files without the 128-byte preamble and file meta header are accepted when they parse as a
    raw dataset that carries valid SOP Class and SOP Instance UIDs. Raises :class:`NotDicomError`
    for anything else that is not DICOM and :class:`DicomError` for a damaged object.
    """
    defer = _DEFER_SIZE if headers_only else None
    notes: list[str] = []
    start = fp.tell()
    head = fp.read(132)
    fp.seek(start)
    has_prefix = len(head) == 132 and head[128:132] == b"DICM"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if has_prefix:
                ds = pydicom.dcmread(fp, defer_size=defer)
            elif _looks_like_raw_dataset(head):
                ds = pydicom.dcmread(fp, defer_size=defer, force=True)
                if not (_valid_uid(ds.get("SOPClassUID")) and _valid_uid(ds.get("SOPInstanceUID"))):
                    raise NotDicomError(f"{label}: not a DICOM file (no DICOM header or UIDs)")
                notes.append("no DICOM file meta header; read as a raw dataset")
            else:
                raise NotDicomError(f"{label}: not a DICOM file (no 'DICM' prefix)")
        except CarinaError:
            raise
        except InvalidDicomError as exc:
            raise NotDicomError(f"{label}: not a DICOM file ({exc})") from exc
        except (EOFError, OSError) as exc:
            raise DicomError(f"{label}: truncated or unreadable DICOM file ({exc})") from exc
        except Exception as exc:  # pydicom raises many types on damaged input
            raise DicomError(
                f"{label}: damaged DICOM header ({type(exc).__name__}: {exc})"
            ) from exc
    for w in caught:
        message = str(w.message)
        if "end of file" in message.lower():  # pydicom stops at EOF with a warning
            raise DicomError(f"{label}: truncated DICOM file ({message})")
        notes.append(message)
    if len(ds) == 0:
        raise DicomError(f"{label}: truncated or empty DICOM file (no data elements)")
    short = _bytes_missing(ds, fp)
    if short:
        raise DicomError(f"{label}: truncated DICOM file (the last element lacks {short} bytes)")
    return ds, notes


def _bytes_missing(ds: Dataset, fp: BinaryIO) -> int:
    """How many bytes the last top-level element needs beyond the end of the stream."""
    if is_deflated(ds):  # value positions refer to the inflated stream
        return 0
    here = fp.tell()
    size = fp.seek(0, io.SEEK_END)
    fp.seek(here)
    raw = ds.get_item(max(ds.keys()), keep_deferred=True)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    if length is None or tell is None or length == 0xFFFFFFFF:
        return 0
    return max(0, int(tell) + int(length) - size)


def transfer_syntax(ds: Dataset) -> str:
    """The transfer syntax UID of the file meta header, or an empty string."""
    meta = getattr(ds, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""


def is_deflated(ds: Dataset) -> bool:
    return transfer_syntax(ds) == DeflatedExplicitVRLittleEndian


def uid_name(uid: str) -> str:
    """The registered name of a UID (e.g. "CT Image Storage"), else the UID itself."""
    if not _valid_uid(uid):  # pydicom warns about malformed UIDs
        return uid
    return UID(uid).name or uid


def open_dataset(ref: InstanceRef, archives: Archives | None = None) -> tuple[Dataset, list[str]]:
    """Read the whole object an :class:`InstanceRef` points to (pixel data included)."""
    if ref.member is not None:
        if archives is None:
            with Archives() as own:
                data = own.read(ref.path, ref.member)
        else:
            data = archives.read(ref.path, ref.member)
        return read_dataset(io.BytesIO(data), ref.label)
    try:
        with open(ref.path, "rb") as fh:
            return read_dataset(fh, ref.label)
    except OSError as exc:
        raise DicomError(f"{ref.label}: cannot open ({exc})") from exc


# -- scanning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    path: str
    member: str | None

    @property
    def label(self) -> str:
        return f"{self.path}::{self.member}" if self.member is not None else self.path


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return False
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06") and zipfile.is_zipfile(path)


def _candidates(root: Path, rejected: list[Rejected]) -> list[_Candidate]:
    files: list[Path]
    if root.is_dir():
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            files.extend(Path(dirpath) / f for f in sorted(filenames))
    elif root.is_file():
        files = [root]
    else:
        raise DicomError(f"{root}: no such file or folder")
    out: list[_Candidate] = []
    for f in files:
        if not _is_zip(f):
            out.append(_Candidate(str(f), None))
            continue
        try:
            with zipfile.ZipFile(f) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    if info.file_size > MAX_ZIP_MEMBER_BYTES:
                        rejected.append(
                            Rejected(f"{f}::{info.filename}", "ZIP member too large to read")
                        )
                    elif info.filename.lower().endswith(".zip"):
                        rejected.append(
                            Rejected(f"{f}::{info.filename}", "ZIP inside a ZIP is not read")
                        )
                    else:
                        out.append(_Candidate(str(f), info.filename))
        except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
            rejected.append(Rejected(str(f), f"unreadable ZIP archive ({exc})"))
    return out


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _expected_native_bytes(ds: Dataset) -> int | None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # two chroma samples shared by each pair of pixels
    n = rows * cols * samples * frames
    return (n * bits + 7) // 8


def _pixel_problem(ds: Dataset) -> str | None:
    """Reason the native pixel data is unusable as stored (shorter than needed), or None."""
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    if raw is None:
        return None
    length = getattr(raw, "length", None)
    if length is None or length == 0xFFFFFFFF:  # encapsulated (compressed)
        return None
    ts = transfer_syntax(ds)
    if ts and ts not in _NATIVE_SYNTAXES:
        return None
    expected = _expected_native_bytes(ds)
    if expected is not None and length < expected:
        return f"truncated: pixel data has {length} bytes, {expected} expected"
    return None


def has_pixel_data(ds: Dataset) -> bool:
    """True when the dataset has a pixel data element (integer or float)."""
    return any(tag in ds for tag in _PIXEL_TAGS)


def _instance_ref(cand: _Candidate, ds: Dataset) -> InstanceRef:
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    return InstanceRef(
        path=cand.path,
        member=cand.member,
        sop_instance_uid=sop_instance_uid(ds),
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        image_position=(ipp[0], ipp[1], ipp[2]) if ipp else None,
        image_orientation=(iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]) if iop else None,
        rows=_int_or_none(ds.get("Rows")),
        columns=_int_or_none(ds.get("Columns")),
        number_of_frames=_int_or_none(ds.get("NumberOfFrames")) or 1,
    )


def _read_candidate(cand: _Candidate, archives: Archives) -> Dataset:
    if cand.member is not None:
        data = archives.read(cand.path, cand.member)
        return read_dataset(io.BytesIO(data), cand.label, headers_only=True)[0]
    try:
        with open(cand.path, "rb") as fh:
            return read_dataset(fh, cand.label, headers_only=True)[0]
    except OSError as exc:
        raise DicomError(f"{cand.label}: cannot open ({exc})") from exc


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)


def scan(path: str | Path, progress: Callable[[int, int], None] | None = None) -> ScanResult:
    """Find DICOM objects under ``path`` (folder, file or ZIP) and group them into series.

    Only headers are read. Files that are not DICOM, damaged, DICOMDIRs or duplicates of an
    instance already found are listed in :attr:`ScanResult.rejected` with the reason.
    ``progress(done, total)`` is called after each file or ZIP member.
    """
    root = Path(path)
    rejected: list[Rejected] = []
    candidates = _candidates(root, rejected)
    total = len(candidates)
    groups: dict[tuple[str, ...], list[_Header]] = {}
    seen: dict[str, str] = {}
    with Archives() as archives:
        for done, cand in enumerate(candidates, start=1):
            # Header values are converted lazily; pydicom's warnings about odd values are given
            # again when the series is loaded, where they become problem notes.
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                reason = _take(cand, archives, seen, groups)
            if reason is not None:
                rejected.append(Rejected(cand.label, reason))
            if progress is not None:
                progress(done, total)
    series = [_series_info(key[0], members) for key, members in groups.items()]
    series.sort(key=lambda s: (s.study_instance_uid, s.series_number or 0, s.series_instance_uid))
    return ScanResult(series=series, rejected=rejected)


@dataclass(frozen=True)
class _Header:
    """What a series summary needs from one instance's header."""

    ref: InstanceRef
    study_instance_uid: str
    modality: str
    series_description: str
    sop_class_uid: str
    patient_id: str
    series_number: int | None
    has_pixels: bool


def _take(
    cand: _Candidate,
    archives: Archives,
    seen: dict[str, str],
    groups: dict[tuple[str, ...], list[_Header]],
) -> str | None:
    """Read one candidate's header into ``groups``; return why it was rejected, if it was."""
    try:
        ds = _read_candidate(cand, archives)
        reason = _reject_reason(ds)
        if reason is not None:
            return reason
        key = _series_key(cand, ds)
        header = _Header(
            ref=_instance_ref(cand, ds),
            study_instance_uid=_str(ds, "StudyInstanceUID"),
            modality=_str(ds, "Modality"),
            series_description=_str(ds, "SeriesDescription"),
            sop_class_uid=sop_class_uid(ds),
            patient_id=_str(ds, "PatientID"),
            series_number=_int_or_none(ds.get("SeriesNumber")),
            has_pixels=has_pixel_data(ds),
        )
    except NotDicomError:
        return "not a DICOM file"
    except DicomError as exc:
        return str(exc).removeprefix(f"{cand.label}: ")
    except Exception as exc:  # header values that pydicom cannot convert
        return f"damaged DICOM header ({type(exc).__name__}: {exc})"
    uid = header.ref.sop_instance_uid
    if uid in seen:
        return f"duplicate of SOP instance {uid} in {seen[uid]}"
    seen[uid] = cand.label
    groups.setdefault(key, []).append(header)
    return None


def _reject_reason(ds: Dataset) -> str | None:
    if sop_class_uid(ds) == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return "DICOMDIR (media directory) skipped; the files it lists are read directly"
    if not sop_instance_uid(ds):
        return "DICOM object without SOPInstanceUID"
    return _pixel_problem(ds)


def sop_instance_uid(ds: Dataset) -> str:
    """SOPInstanceUID, else the MediaStorageSOPInstanceUID of the file meta header."""
    uid = str(ds.get("SOPInstanceUID", "") or "")
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "") if meta else ""
    return uid


def sop_class_uid(ds: Dataset) -> str:
    """SOPClassUID, else the MediaStorageSOPClassUID of the file meta header."""
    uid = str(ds.get("SOPClassUID", "") or "")
    if not uid:
        meta = getattr(ds, "file_meta", None)
        uid = str(getattr(meta, "MediaStorageSOPClassUID", "") or "") if meta else ""
    return uid


def _series_key(cand: _Candidate, ds: Dataset) -> tuple[str, ...]:
    """Grouping key: the SeriesInstanceUID, or descriptive fields when it is empty."""
    uid = _str(ds, "SeriesInstanceUID")
    if uid:
        return (uid,)
    folder = str(Path(cand.member).parent) if cand.member is not None else ""
    return (
        "",
        str(Path(cand.path).parent) if cand.member is None else cand.path,
        folder,
        _str(ds, "StudyInstanceUID"),
        _str(ds, "SeriesNumber"),
        _str(ds, "SeriesDescription"),
        _str(ds, "Modality"),
        _str(ds, "FrameOfReferenceUID"),
    )


def _series_info(uid: str, members: list[_Header]) -> SeriesInfo:
    members = sorted(
        members,
        key=lambda m: (
            m.ref.instance_number if m.ref.instance_number is not None else 0,
            m.ref.label,
        ),
    )
    first = members[0]
    return SeriesInfo(
        series_instance_uid=uid,
        study_instance_uid=first.study_instance_uid,
        modality=first.modality,
        series_description=first.series_description,
        sop_class_uid=first.sop_class_uid,
        patient_id=first.patient_id,
        n_instances=len(members),
        sources=tuple(m.ref for m in members),
        has_pixels=any(m.has_pixels for m in members),
        series_number=first.series_number,
    )
