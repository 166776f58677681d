"""On the real corpus: no identifying value survives in the bytes, objects stay valid, references
still resolve."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
)

from carina.deid import DeidOptions, annex_e

from .conftest import Run, dciodvfy_errors, read

TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "DA", "DT", "TM", "AE", "AS", "CS", "IS"}


def _walk(ds: Dataset, removed: bool = False) -> Iterator[tuple[DataElement, bool]]:
    """Every element with a flag: does the profile remove or replace it (or, for text, an
    ancestor sequence)? UIDs count only by their own row: code sequences keep theirs."""
    table = annex_e()
    opts = DeidOptions()
    for elem in ds:
        tag = int(elem.tag)
        rule = table.lookup(tag)
        action = rule.action(opts, elem.VR == "SQ") if rule else "K"
        hit = removed or (action in {"X", "Z", "D", "U"} and not (tag >> 16) & 1)
        hit = hit or bool((tag >> 16) & 1)
        if elem.VR == "SQ":
            # items of U sequences keep their unlisted content (e.g. Referenced SOP Class UID)
            inner = removed or (action in {"X", "Z", "D"})
            for item in elem.value:
                yield from _walk(item, inner)
        elif elem.VR == "UI":
            yield elem, action in {"X", "Z", "D", "U"}
        else:
            yield elem, hit


def _tokens(value: str) -> set[str]:
    value = value.strip().strip("\x00").strip()
    out = {value}
    for part in value.replace("^", " ").replace("=", " ").split():
        out.add(part)
    for comp in value.split("^"):
        out.add(comp.strip())
    return {t for t in out if len(t) >= 5 and len(set(t)) > 2}


def phi_strings(ds: Dataset) -> tuple[set[bytes], set[str]]:
    """Byte strings of values the basic profile removes or replaces, minus those the profile
    legitimately keeps elsewhere in the same object; and the UIDs it replaces."""
    try:
        encodings = convert_encodings(ds.get("SpecificCharacterSet", "ISO_IR 6"))
    except Exception:
        encodings = ["iso8859"]
    phi: set[str] = set()
    uids: set[str] = set()
    # the writer's Implementation Class UID (pydicom's) is in every output's file meta; an input
    # whose Instance Creator UID is pydicom's root contains it by coincidence
    kept: list[str] = [PYDICOM_IMPLEMENTATION_UID]
    for elem, hit in _walk(ds):
        if elem.is_empty or elem.VR in {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}:
            continue
        values = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
        if not hit:
            kept.extend(values)
        elif elem.VR not in TEXT_VRS | {"UI"}:
            continue
        elif elem.VR == "UI":
            uids.update(v for v in values if not v.startswith("1.2.840.10008."))
        elif elem.VR not in {"CS", "IS", "AS"}:
            for v in values:
                phi.update(_tokens(v))
    phi = {p for p in phi if not any(p in k for k in kept)}
    uids = {u for u in uids if not any(u in k for k in kept)}
    out: set[bytes] = set()
    for p in phi:
        try:
            out.add(encode_string(p, encodings))
        except Exception:
            out.add(p.encode("utf-8"))
    return out, uids


def output_bytes(path: Path) -> bytes:
    """The file's bytes; deflated files are inflated (re-written uncompressed) first."""
    ds = read(path)
    if ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    return path.read_bytes()


def test_every_stored_object_was_processed(basic_run: Run, corpus: list[Path]) -> None:
    assert len(basic_run.outputs) == len(corpus) >= 200
    assert all(p.is_file() for p in basic_run.outputs.values())


def test_fake_phi_strings_are_gone_from_the_output_bytes(basic_run: Run) -> None:
    leaks: list[str] = []
    checked = 0
    for src, dst in basic_run.outputs.items():
        phi, uids = phi_strings(read(src))
        data = output_bytes(dst)
        checked += len(phi) + len(uids)
        leaks += [f"{src.name}: {p!r}" for p in phi if p in data]
        leaks += [f"{src.name}: UID {u}" for u in uids if u.encode() in data]
    assert checked > 2000  # the scan looked at real values
    assert leaks == [], leaks


def test_known_fake_identities_are_gone(basic_run: Run, shared_data: Path) -> None:
    root = shared_data / "deid_fake_phi"
    names = {
        "ultrasounds/GREYSCALE_IMAGE.dcm": [b"PATIENTFIVE", b"19510829", b"CLEVELAND", b"KILLEEN"],
        "ultrasounds/RGB_IMAGE.dcm": [b"ZZZDOWNTIME", b"DOWNTIME"],
        "humans/ctbrain1.dcm": [b"SIMPSON", b"HOMER", b"SPRINGFIELD"],
        "dicom-cookies/image1.dcm": [b"STANFORD", b"cookie-47"],
    }
    for rel, needles in names.items():
        src = root / rel
        assert any(n in src.read_bytes() for n in needles), rel  # present before
        data = basic_run.outputs[src].read_bytes()
        assert [n for n in needles if n in data] == [], rel


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_finds_no_new_error(basic_run: Run) -> None:
    new: dict[str, set[str]] = {}
    compared = 0
    for src, dst in basic_run.outputs.items():
        before = dciodvfy_errors(src)
        if before is None:
            continue  # dciodvfy cannot parse the input (deflate)
        after = dciodvfy_errors(dst)
        if after is None:
            after = {"output unreadable by dciodvfy"}
        compared += 1
        if after - before:
            new[src.name] = after - before
    assert compared >= 200
    assert new == {}


def test_file_meta_matches_the_new_sop_instance(basic_run: Run) -> None:
    for src, dst in basic_run.outputs.items():
        before, after = read(src), read(dst)
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert after.SOPInstanceUID != before.SOPInstanceUID
        assert after.SOPInstanceUID.startswith("2.25.")
        assert after.PatientIdentityRemoved == "YES"
        assert after.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert after.LongitudinalTemporalInformationModified == "REMOVED"


def _uid_paths(ds: Dataset, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for elem in ds:
        path = f"{prefix}{int(elem.tag):08X}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                out.update(_uid_paths(item, f"{path}[{i}]."))
        elif elem.VR == "UI" and elem.VM == 1 and not elem.is_empty:
            out[path] = str(elem.value)
    return out


def test_references_that_resolved_still_resolve(basic_run: Run) -> None:
    """A UID in one object that names another object's instance, series, study or frame of
    reference must, after de-identification, name the same object's new UID."""
    targets = {0x00080018: "instance", 0x0020000E: "series", 0x0020000D: "study"}
    targets[0x00200052] = "frame of reference"
    before_ids: dict[str, tuple[Path, int]] = {}
    for src in basic_run.outputs:
        ds = read(src)
        for tag in targets:
            if tag in ds and ds[tag].value:
                before_ids[str(ds[tag].value)] = (src, tag)
    resolved = 0
    table, opts = annex_e(), DeidOptions()
    for src, dst in basic_run.outputs.items():
        before, after = _uid_paths(read(src)), _uid_paths(read(dst))
        for path, uid in before.items():
            if uid not in before_ids or path in {"00080018", "0020000E", "0020000D", "00200052"}:
                continue
            top = table.lookup(int(path[:8], 16))
            if "[" in path and top is not None and top.action(opts, sequence=True) == "X":
                assert path not in after  # the profile removes the referencing sequence
                continue
            target, tag = before_ids[uid]
            new_target = read(basic_run.outputs[target])[tag].value
            assert after.get(path) == new_target, f"{src.name} {path}"
            resolved += 1
    assert resolved >= 100  # SEG/SR/RT and series references in the corpus


def test_seg_references_its_ct_series(basic_run: Run, shared_data: Path) -> None:
    base = shared_data / "dicom_variants/dcmqi/segmentations"
    seg = read(basic_run.outputs[base / "liver.dcm"])
    cts = [
        read(dst)
        for src, dst in basic_run.outputs.items()
        if src.parent == base / "ct-3slice" and src.suffix == ".dcm"
    ]
    assert len(cts) == 3
    ref = seg.ReferencedSeriesSequence[0]
    assert {c.SeriesInstanceUID for c in cts} == {ref.SeriesInstanceUID}
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} == {
        c.SOPInstanceUID for c in cts
    }
    assert {c.FrameOfReferenceUID for c in cts} == {seg.FrameOfReferenceUID}
    assert {c.StudyInstanceUID for c in cts} == {seg.StudyInstanceUID}
