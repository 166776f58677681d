"""Storage and catalog: byte identity, dedup, conflicts, rejections, atomicity, recovery."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from carina.archive import Archive, IngestStatus, RecoveryReport, parse_instance
from carina.archive.parse import dataset_offset
from carina.core.errors import ConflictError, InstanceRejected, NotFoundError, StorageError
from carina.db import Instance, Patient, Series, Study


def _count(archive: Archive, model: type) -> int:
    with archive.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_series_stored_byte_identical_and_cataloged(
    archive: Archive, lung_ct_files: list[Path]
) -> None:
    results = archive.ingest([(str(p), p.read_bytes()) for p in lung_ct_files])
    assert [r.status for r in results] == [IngestStatus.STORED] * 30
    first = pydicom.dcmread(lung_ct_files[0])
    stored = archive.instances(first.StudyInstanceUID)
    assert len(stored) == 30
    by_uid = {s.sop_instance_uid: s for s in stored}
    for path in lung_ct_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert archive.read(by_uid[ds.SOPInstanceUID]) == path.read_bytes()
        assert (archive.data_dir / by_uid[ds.SOPInstanceUID].path).is_file()
    assert (_count(archive, Patient), _count(archive, Study), _count(archive, Series)) == (1, 1, 1)
    with archive.session() as session:
        study = session.scalars(select(Study)).one()
        assert study.study_instance_uid == first.StudyInstanceUID
        assert study.study_date == first.StudyDate
        assert study.modalities_in_study == "CT"
        assert study.patient.patient_id == first.PatientID
        instance = session.scalars(
            select(Instance).where(Instance.sop_instance_uid == first.SOPInstanceUID)
        ).one()
        assert (instance.rows, instance.columns) == (first.Rows, first.Columns)
        assert instance.transfer_syntax_uid == first.file_meta.TransferSyntaxUID
        assert instance.size == lung_ct_files[0].stat().st_size


def test_same_bytes_again_is_a_no_op(archive: Archive, lung_ct_files: list[Path]) -> None:
    data = lung_ct_files[0].read_bytes()
    assert archive.ingest_one(data).status is IngestStatus.STORED
    stored = archive.data_dir / archive.store.relative_path(parse_instance(data).sop_instance_uid)
    mtime = stored.stat().st_mtime_ns
    assert archive.ingest_one(data).status is IngestStatus.ALREADY_STORED
    assert archive.ingest([(None, data), (None, data)])[1].status is IngestStatus.ALREADY_STORED
    assert stored.stat().st_mtime_ns == mtime
    assert _count(archive, Instance) == 1


def test_same_dataset_with_other_file_meta_is_already_stored(
    archive: Archive, lung_ct_files: list[Path]
) -> None:
    original = lung_ct_files[2].read_bytes()
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.file_meta.ImplementationVersionName = "OTHER_SENDER"
    ds.file_meta.SourceApplicationEntityTitle = "MODALITY7"
    resent = io.BytesIO()
    ds.save_as(resent, enforce_file_format=True)
    assert resent.getvalue() != original
    offset = dataset_offset(original)
    assert resent.getvalue()[dataset_offset(resent.getvalue()) :] == original[offset:]
    assert offset > 132
    assert archive.ingest_one(original).status is IngestStatus.STORED
    assert archive.ingest_one(resent.getvalue()).status is IngestStatus.ALREADY_STORED
    (stored,) = archive.instances(ds.StudyInstanceUID)
    assert archive.read(stored) == original


def test_same_uid_different_bytes_is_a_conflict(
    archive: Archive, lung_ct_files: list[Path]
) -> None:
    original = lung_ct_files[0].read_bytes()
    ds = pydicom.dcmread(io.BytesIO(original))
    ds.ImageComments = "changed"
    changed = io.BytesIO()
    ds.save_as(changed)
    archive.store_instance(original)
    result = archive.ingest_one(changed.getvalue())
    assert result.status is IngestStatus.CONFLICT
    assert ds.SOPInstanceUID in (result.reason or "")
    with pytest.raises(ConflictError):
        archive.store_instance(changed.getvalue())
    (only,) = archive.instances(ds.StudyInstanceUID)
    assert archive.read(only) == original
    # two different objects with one UID inside one batch: the first wins
    with Archive(archive.data_dir.parent / "other") as fresh:
        results = fresh.ingest([(None, original), (None, changed.getvalue())])
        assert [r.status for r in results] == [IngestStatus.STORED, IngestStatus.CONFLICT]


def test_invalid_objects_are_rejected_and_leave_nothing(
    archive: Archive, lung_ct_files: list[Path], shared_data: Path
) -> None:
    ds = pydicom.dcmread(lung_ct_files[0])
    del ds.StudyInstanceUID
    no_study = io.BytesIO()
    ds.save_as(no_study)
    truncated = (shared_data / "dicom_variants" / "pydicom" / "MR_truncated.dcm").read_bytes()
    cases = {
        b"hello, this is not DICOM": "not a DICOM file",
        no_study.getvalue(): "missing StudyInstanceUID",
        truncated: "pixel data truncated",
        b"\0" * 128 + b"DICM" + b"\2\0": "",
    }
    results = archive.ingest([(None, data) for data in cases])
    for result, expected in zip(results, cases.values(), strict=True):
        assert result.status is IngestStatus.REJECTED
        assert result.reason
        assert expected in result.reason
    with pytest.raises(InstanceRejected, match="not a DICOM file"):
        archive.store_instance(b"junk")
    assert _count(archive, Instance) == 0
    assert list(archive.store.iter_files()) == []


def test_bare_dataset_gets_file_meta(archive: Archive, shared_data: Path) -> None:
    source = shared_data / "dicom_variants" / "pydicom" / "ExplVR_LitEndNoMeta.dcm"
    result = archive.ingest_one(source.read_bytes())
    assert result.status is IngestStatus.STORED
    (stored,) = archive.instances(result.study_instance_uid or "")
    data = archive.read(stored)
    assert data[128:132] == b"DICM"
    written = pydicom.dcmread(io.BytesIO(data))
    original = pydicom.dcmread(source, force=True)
    assert written.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert written.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert [(e.tag, e.value) for e in written] == [(e.tag, e.value) for e in original]


def test_failed_commit_removes_the_new_files(
    archive: Archive, lung_ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Session) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Session, "commit", fail)
    with pytest.raises(StorageError, match="nothing of the batch was stored"):
        archive.ingest([(None, p.read_bytes()) for p in lung_ct_files[:5]])
    monkeypatch.undo()
    assert list(archive.store.iter_files()) == []
    assert _count(archive, Instance) == 0
    assert all(
        r.status is IngestStatus.STORED
        for r in archive.ingest([(None, p.read_bytes()) for p in lung_ct_files[:5]])
    )


def test_recovery_removes_temp_and_orphan_files(
    archive: Archive, lung_ct_files: list[Path]
) -> None:
    kept = archive.ingest_one(lung_ct_files[0].read_bytes())
    lost = archive.ingest_one(lung_ct_files[1].read_bytes())
    temp = archive.data_dir / "instances" / "00" / "00" / ".x.dcm.1234.part"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"partial")
    orphan = archive.data_dir / archive.store.relative_path("1.2.3.4")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"no row")
    (lost_row,) = archive.instances(lost.study_instance_uid or "", sop_uid=lost.sop_instance_uid)
    (archive.data_dir / lost_row.path).unlink()
    report = archive.recover(full=True)
    assert report.temp_files_removed == 1
    assert report.orphan_files_removed == 1
    assert report.missing_files == (lost_row.path,)
    assert not temp.exists()
    assert not orphan.exists()
    (kept_row,) = archive.instances(kept.study_instance_uid or "", sop_uid=kept.sop_instance_uid)
    assert archive.read(kept_row) == lung_ct_files[0].read_bytes()


def test_metadata_is_cached_without_bulk_data(archive: Archive, lung_ct_files: list[Path]) -> None:
    result = archive.store_instance(lung_ct_files[3].read_bytes())
    study, series = result.study_instance_uid or "", result.series_instance_uid or ""
    (text,) = archive.metadata(study, series, result.sop_instance_uid)
    cached = json.loads(text)
    ds = pydicom.dcmread(lung_ct_files[3])
    expected = ds.to_json_dict(bulk_data_threshold=2**62)
    pixel = cached.pop("7FE00010")
    assert pixel["BulkDataURI"].endswith(
        f"studies/{study}/series/{series}/instances/{result.sop_instance_uid}/bulkdata/7FE00010"
    )
    assert "InlineBinary" not in pixel
    expected.pop("7FE00010")
    for key in [k for k in expected if k.endswith("0000")]:
        expected.pop(key)
    assert cached == expected
    assert len(archive.metadata(study)) == 1
    with pytest.raises(NotFoundError):
        archive.metadata("1.2.3")


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    with Archive(tmp_path / "d") as first:
        tables = set(inspect(first.engine).get_table_names())
    assert {"patients", "studies", "series", "instances", "alembic_version"} <= tables
    with Archive(tmp_path / "d") as again, again.engine.connect() as connection:
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert version == "0008"
    assert mode == "wal"


def test_migrations_match_the_models(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from carina.db import Base

    with Archive(tmp_path / "d") as archive, archive.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_commit_applied_but_reported_failed_keeps_files(
    archive: Archive, lung_ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    original_commit = Session.commit

    def commit_then_fail(self: Session) -> None:
        original_commit(self)
        raise OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(Session, "commit", commit_then_fail)
    with pytest.raises(StorageError):
        archive.ingest([(None, p.read_bytes()) for p in lung_ct_files[:3]])
    monkeypatch.undo()
    with archive.session() as session:
        rows = set(session.scalars(select(Instance.path)))
    assert len(rows) == 3
    assert set(archive.store.iter_files()) == rows
    assert archive.recover(full=True).missing_files == ()


def test_unreachable_catalog_leaves_files_for_recovery(
    archive: Archive, lung_ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Session, *args: object, **kwargs: object) -> None:
        raise OperationalError("SQL", {}, Exception("server closed the connection"))

    monkeypatch.setattr(Session, "commit", fail)
    monkeypatch.setattr(Session, "scalars", fail)
    with pytest.raises(StorageError):
        archive.ingest([(None, p.read_bytes()) for p in lung_ct_files[:3]])
    monkeypatch.undo()
    assert len(list(archive.store.iter_files())) == 3
    report = archive.recover()
    assert report.orphan_files_removed == 3
    assert list(archive.store.iter_files()) == []


def test_series_claimed_by_another_study_is_rejected(
    archive: Archive, lung_ct_files: list[Path]
) -> None:
    archive.store_instance(lung_ct_files[0].read_bytes())
    ds = pydicom.dcmread(lung_ct_files[1])
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    moved = io.BytesIO()
    ds.save_as(moved)
    result = archive.ingest_one(moved.getvalue())
    assert result.status is IngestStatus.REJECTED
    assert "belongs to study" in (result.reason or "")
    assert len(list(archive.store.iter_files())) == 1
    assert _count(archive, Instance) == 1
    assert _count(archive, Study) == 1


def test_startup_recovery_follows_the_journal(
    tmp_path: Path, lung_ct_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    with Archive(data_dir) as archive:
        archive.store_instance(lung_ct_files[0].read_bytes())

        def die(self: Session) -> None:  # the process "dies" after writing, before committing
            raise KeyboardInterrupt

        monkeypatch.setattr(Session, "commit", die)
        with pytest.raises(KeyboardInterrupt):
            archive.ingest([(None, p.read_bytes()) for p in lung_ct_files[1:4]])
        monkeypatch.undo()
        assert len(list(archive.store.iter_files())) == 4
        (entry,) = archive.store.pending()
        assert len(entry[1]) == 3
        leftover = archive.store.absolute(entry[1][0])
        (leftover.parent / f".{leftover.name}.0123.part").write_bytes(b"partial")
    with Archive(data_dir) as reopened:  # start-up: only the journal's paths are looked at
        assert reopened.store.pending() == []
        assert len(list(reopened.store.iter_files())) == 1
        assert not list(leftover.parent.glob("*.part"))
        assert reopened.recover(full=True) == RecoveryReport(0, 0, ())
