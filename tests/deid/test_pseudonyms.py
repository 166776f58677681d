"""Keyed pseudonyms: deterministic per secret, consistent across studies, reversible only with
the secret through the encrypted mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID

from carina.core.errors import ConfigurationError, MappingError
from carina.deid import (
    Deidentifier,
    DeidOptions,
    MappingStore,
    Pseudonymizer,
    deidentify_file,
    load_secret,
    reidentify,
    reidentify_study,
)
from carina.deid.pseudonym import shift_date, shift_datetime

from .conftest import OTHER_SECRET, SECRET, read

US = "deid_fake_phi/ultrasounds/GREYSCALE_IMAGE.dcm"
CT_SERIES = "lung_ct_tumor_boxes"


def test_uid_is_a_valid_2_25_uid_and_keyed() -> None:
    p, q = Pseudonymizer(SECRET), Pseudonymizer(OTHER_SECRET)
    uid = p.uid("1.2.840.113619.2.55.3.1234")
    assert uid.startswith("2.25.")
    assert UID(uid).is_valid
    assert len(uid) <= 64
    assert int(uid[5:]) < 2**128
    assert uid == Pseudonymizer(SECRET).uid("1.2.840.113619.2.55.3.1234")
    assert uid != q.uid("1.2.840.113619.2.55.3.1234")
    assert uid != p.uid("1.2.840.113619.2.55.3.1235")


def test_date_shift_is_within_ten_years_back() -> None:
    p = Pseudonymizer(SECRET)
    shifts = [p.date_shift_days(f"PID{i}") for i in range(2000)]
    assert all(-3650 <= s <= -1 for s in shifts)
    assert len(set(shifts)) > 1000  # spread, not a constant
    assert p.date_shift_days("PID7") == Pseudonymizer(SECRET).date_shift_days("PID7")


def test_shift_helpers() -> None:
    assert shift_date("20240301", -1) == "20240229"
    assert shift_date("2024", -1) is None
    assert shift_datetime("20240301120000.5+0100", -1) == "20240229120000.5+0100"


def test_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Pseudonymizer(b"short")
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    assert load_secret(secret_file) == SECRET


def test_same_patient_twice_same_secret_same_pseudonyms(shared_data: Path) -> None:
    ds = read(shared_data / US)
    a, ra = Deidentifier(SECRET).apply(ds)
    b, _rb = Deidentifier(SECRET).apply(ds)
    c, _rc = Deidentifier(OTHER_SECRET).apply(ds)
    assert a.PatientID == b.PatientID != c.PatientID
    assert a.PatientName == b.PatientName
    for kw in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        assert a[kw].value == b[kw].value != c[kw].value
    assert ra.patient_pseudonym == a.PatientID


def test_a_later_study_of_the_same_patient(shared_data: Path) -> None:
    """A second study (new Study UID, later dates) keeps the patient pseudonym and date shift."""
    first = read(shared_data / US)
    later = read(shared_data / US)
    later.StudyInstanceUID = first.StudyInstanceUID + ".2"
    later.SOPInstanceUID = first.SOPInstanceUID + ".2"
    later.StudyDate = "20180415"
    opts = DeidOptions(retain_long_modified_dates=True)
    a, ra = Deidentifier(SECRET, opts).apply(first)
    b, rb = Deidentifier(SECRET, opts).apply(later)
    assert a.PatientID == b.PatientID
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert ra.date_shift_days == rb.date_shift_days
    gap = dt.date(2018, 4, 15) - dt.date(2017, 3, 2)
    got = dt.datetime.strptime(b.StudyDate, "%Y%m%d") - dt.datetime.strptime(a.StudyDate, "%Y%m%d")
    assert got.days == gap.days


def test_modified_dates_keep_intervals(shared_data: Path) -> None:
    ds = read(shared_data / US)
    out, report = Deidentifier(SECRET, DeidOptions(retain_long_modified_dates=True)).apply(ds)
    shift = report.date_shift_days
    assert shift is not None
    assert -3650 <= shift <= -1
    for kw in ("StudyDate", "SeriesDate", "ContentDate", "InstanceCreationDate"):
        before = dt.datetime.strptime(ds[kw].value, "%Y%m%d").date()
        assert out[kw].value == (before + dt.timedelta(days=shift)).strftime("%Y%m%d"), kw
    assert out.AcquisitionDateTime[:8] == shift_date(ds.AcquisitionDateTime[:8], shift)
    assert out.AcquisitionDateTime[8:] == ds.AcquisitionDateTime[8:]
    assert out.StudyTime == ds.StudyTime  # whole-day shift: times unchanged
    assert "PatientBirthDate" not in out or not out.PatientBirthDate
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107"}


def test_dates_without_a_date_option_are_not_kept(shared_data: Path) -> None:
    ds = read(shared_data / US)
    out, report = Deidentifier(SECRET).apply(ds)
    assert report.date_shift_days is None
    assert not out.StudyDate
    assert out.SeriesDate == "19000101"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_series_of_one_patient_share_study_frame_and_patient(
    shared_data: Path, tmp_path: Path
) -> None:
    files = sorted((shared_data / CT_SERIES).rglob("*.dcm"))
    assert len(files) >= 20
    deid = Deidentifier(SECRET, DeidOptions(retain_long_modified_dates=True))
    outs = []
    for i, src in enumerate(files):
        deidentify_file(src, tmp_path / f"{i}.dcm", deid)
        outs.append(read(tmp_path / f"{i}.dcm"))
    originals = [read(f) for f in files]
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({o[kw].value for o in outs}) == len({o[kw].value for o in originals}), kw
    assert len({o.SOPInstanceUID for o in outs}) == len(files)
    assert len({o.StudyDate for o in outs}) == len({o.StudyDate for o in originals})


def test_mapping_is_encrypted_and_needs_the_secret(shared_data: Path, tmp_path: Path) -> None:
    mapping_file = tmp_path / "project.map"
    store = MappingStore(mapping_file, SECRET)
    ds = read(shared_data / US)
    out, _report = Deidentifier(SECRET, mapping=store).apply(ds)
    store.save()
    blob = mapping_file.read_bytes()
    assert b"2020202020202" not in blob
    assert b"PATIENTFIVE" not in blob

    identity = reidentify(out.PatientID, mapping_file, SECRET)
    assert identity.patient_id == "2020202020202"
    assert identity.patient_name == str(ds.PatientName)
    assert identity.issuer == "CCHS"
    assert reidentify_study(out.StudyInstanceUID, mapping_file, SECRET) == ds.StudyInstanceUID

    with pytest.raises(MappingError, match="wrong project secret"):
        reidentify(out.PatientID, mapping_file, OTHER_SECRET)
    damaged = bytearray(blob)
    damaged[-5] ^= 0xFF
    mapping_file.write_bytes(bytes(damaged))
    with pytest.raises(MappingError):
        reidentify(out.PatientID, mapping_file, SECRET)
    MappingStore(tmp_path / "empty.map", SECRET).save()
    with pytest.raises(MappingError, match="not in"):
        reidentify("ANON-0000000000000000", tmp_path / "empty.map", SECRET)


def test_mapping_accumulates_across_runs(shared_data: Path, tmp_path: Path) -> None:
    mapping_file = tmp_path / "project.map"
    for rel in (US, "deid_fake_phi/humans/ctbrain1.dcm"):
        store = MappingStore(mapping_file, SECRET)
        Deidentifier(SECRET, mapping=store).apply(read(shared_data / rel))
        store.save()
    assert len(MappingStore(mapping_file, SECRET).patients) == 2


@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
    st.text(min_size=1, max_size=12),
)
def test_shift_keeps_every_interval(a: dt.date, b: dt.date, patient: str) -> None:
    shift = Pseudonymizer(SECRET).date_shift_days(patient)
    sa, sb = shift_date(a.strftime("%Y%m%d"), shift), shift_date(b.strftime("%Y%m%d"), shift)
    assert sa is not None
    assert sb is not None
    got = dt.datetime.strptime(sb, "%Y%m%d") - dt.datetime.strptime(sa, "%Y%m%d")
    assert got.days == (b - a).days
    assert (dt.datetime.strptime(sa, "%Y%m%d").date() - a).days == shift
