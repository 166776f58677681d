"""The archive: instance files plus their catalog, and the one ingest path every source uses."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, joinedload, sessionmaker

from carina.archive.parse import ParsedInstance, parse_instance
from carina.archive.query import Level, Query, build_statement
from carina.archive.store import FileStore
from carina.core.errors import ConflictError, InstanceRejected, NotFoundError, StorageError
from carina.db import (
    Instance,
    Patient,
    Series,
    Study,
    create_db_engine,
    sqlite_url,
    upgrade_database,
)

log = logging.getLogger(__name__)


class IngestStatus(enum.Enum):
    """What ingest did with one instance."""

    STORED = "stored"
    ALREADY_STORED = "already stored"
    REJECTED = "rejected"
    CONFLICT = "conflict"

    @property
    def ok(self) -> bool:
        """Whether the instance is in the archive after ingest."""
        return self in (IngestStatus.STORED, IngestStatus.ALREADY_STORED)


@dataclass(frozen=True)
class IngestResult:
    """The outcome of ingesting one instance; ``source`` names where the bytes came from."""

    status: IngestStatus
    source: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    reason: str | None = None
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class RecoveryReport:
    """What the start-up consistency check found and repaired."""

    temp_files_removed: int
    orphan_files_removed: int
    missing_files: tuple[str, ...]


@dataclass(frozen=True)
class StoredInstance:
    """Catalog facts of a stored instance needed to serve it."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    path: str
    size: int
    sha256: str
    number_of_frames: int | None


def _result(
    parsed: ParsedInstance, status: IngestStatus, source: str | None, reason: str | None
) -> IngestResult:
    return IngestResult(
        status=status,
        source=source,
        sop_instance_uid=parsed.sop_instance_uid,
        sop_class_uid=parsed.sop_class_uid,
        study_instance_uid=parsed.study_instance_uid,
        series_instance_uid=parsed.series_instance_uid,
        reason=reason,
        warnings=parsed.warnings,
    )


def _stored(instance: Instance, series_uid: str, study_uid: str) -> StoredInstance:
    return StoredInstance(
        sop_instance_uid=instance.sop_instance_uid,
        sop_class_uid=instance.sop_class_uid,
        study_instance_uid=study_uid,
        series_instance_uid=series_uid,
        transfer_syntax_uid=instance.transfer_syntax_uid,
        path=instance.path,
        size=instance.size,
        sha256=instance.sha256,
        number_of_frames=instance.number_of_frames,
    )


def _conflict_reason(uid: str) -> str:
    return f"SOPInstanceUID {uid} is already stored with different content"


class Archive:
    """Stored instances and their catalog under one data directory.

    ``database_url`` defaults to SQLite at ``data_dir/catalog.sqlite``. Opening runs the schema
    migrations and the start-up consistency check (:meth:`recover`).
    """

    def __init__(self, data_dir: Path, database_url: str | None = None, *, recover: bool = True):
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = FileStore(data_dir)
        self.engine: Engine = create_db_engine(
            database_url or sqlite_url(data_dir / "catalog.sqlite")
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()
        with self._write_lock():
            upgrade_database(self.engine)
        if recover:
            self.recover()

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._lock, self.store.write_lock():
            yield

    def session(self) -> Session:
        """A new catalog session (the caller closes it)."""
        return self._sessions()

    # -- ingest ---------------------------------------------------------------------------------

    def ingest_one(self, data: bytes, source: str | None = None) -> IngestResult:
        """Ingest one instance; see :meth:`ingest`."""
        return self.ingest([(source, data)])[0]

    def store_instance(self, data: bytes) -> IngestResult:
        """Ingest one instance, raising :class:`InstanceRejected` or :class:`ConflictError`."""
        result = self.ingest_one(data)
        if result.status is IngestStatus.CONFLICT:
            raise ConflictError(result.reason or "conflict", result.sop_instance_uid)
        if result.status is IngestStatus.REJECTED:
            raise InstanceRejected(result.reason or "rejected", result.sop_instance_uid)
        return result

    def ingest(
        self, items: Sequence[tuple[str | None, bytes]], *, study_uid: str | None = None
    ) -> list[IngestResult]:
        """Ingest a batch of ``(source, bytes)`` in one catalog transaction.

        Each valid instance is written to its file first, then all catalog rows are committed
        together; when the commit fails, the files written for the batch are removed and
        :class:`StorageError` is raised. Per-instance problems do not raise: they come back as
        ``REJECTED`` or ``CONFLICT`` results. Same SOPInstanceUID with the same bytes is a no-op.
        With ``study_uid``, instances of other studies are rejected.
        """
        results: list[IngestResult | None] = [None] * len(items)
        parsed: list[tuple[int, ParsedInstance]] = []
        for index, (source, data) in enumerate(items):
            try:
                instance = parse_instance(data)
                if study_uid is not None and instance.study_instance_uid != study_uid:
                    raise InstanceRejected(
                        f"StudyInstanceUID {instance.study_instance_uid} is not {study_uid}",
                        instance.sop_instance_uid,
                    )
                parsed.append((index, instance))
            except InstanceRejected as exc:
                results[index] = IngestResult(
                    IngestStatus.REJECTED, source, exc.sop_instance_uid, reason=exc.reason
                )
        if parsed:
            with self._write_lock():
                for index, result in self._commit_batch([(i, items[i][0], p) for i, p in parsed]):
                    results[index] = result
        return [r for r in results if r is not None]

    def _commit_batch(
        self, batch: list[tuple[int, str | None, ParsedInstance]]
    ) -> list[tuple[int, IngestResult]]:
        out: list[tuple[int, IngestResult]] = []
        written: list[str] = []
        with self.session() as session:
            uids = list({p.sop_instance_uid for _, _, p in batch})
            known: dict[str, str] = {}
            for start in range(0, len(uids), 500):
                rows = session.execute(
                    select(Instance.sop_instance_uid, Instance.dataset_sha256).where(
                        Instance.sop_instance_uid.in_(uids[start : start + 500])
                    )
                )
                for uid, stored_digest in rows:
                    known[uid] = stored_digest
            patients: dict[tuple[str, str, str], Patient] = {}
            studies: dict[str, Study] = {}
            series_by_uid: dict[str, Series] = {}
            to_write: list[tuple[int, str | None, ParsedInstance, Series]] = []
            journal: Path | None = None
            try:
                for index, source, p in batch:
                    digest = known.get(p.sop_instance_uid)
                    if digest is not None:
                        if digest == p.dataset_sha256:
                            out.append(
                                (index, _result(p, IngestStatus.ALREADY_STORED, source, None))
                            )
                        else:
                            reason = _conflict_reason(p.sop_instance_uid)
                            out.append((index, _result(p, IngestStatus.CONFLICT, source, reason)))
                        continue
                    try:
                        series = self._series_for(session, p, patients, studies, series_by_uid)
                    except InstanceRejected as exc:
                        out.append((index, _result(p, IngestStatus.REJECTED, source, exc.reason)))
                        continue
                    known[p.sop_instance_uid] = p.dataset_sha256
                    to_write.append((index, source, p, series))
                if not to_write:
                    session.rollback()
                    return out
                journal = self.store.begin(
                    [self.store.relative_path(p.sop_instance_uid) for _, _, p, _ in to_write]
                )
                for index, source, p, series in to_write:
                    relative = self.store.relative_path(p.sop_instance_uid)
                    self.store.write(relative, p.data)
                    written.append(relative)
                    session.add(
                        Instance(
                            sop_instance_uid=p.sop_instance_uid,
                            series=series,
                            sop_class_uid=p.sop_class_uid,
                            transfer_syntax_uid=p.transfer_syntax_uid,
                            size=len(p.data),
                            sha256=p.sha256,
                            dataset_sha256=p.dataset_sha256,
                            path=relative,
                            metadata_json=p.metadata_json,
                            **p.instance,
                        )
                    )
                    out.append((index, _result(p, IngestStatus.STORED, source, None)))
                session.commit()
            except (SQLAlchemyError, StorageError, OSError) as exc:
                with contextlib.suppress(SQLAlchemyError):
                    session.rollback()
                if self._discard_uncommitted(written) and journal is not None:
                    self.store.end(journal)
                raise StorageError(
                    f"ingest failed, nothing of the batch was stored: {exc}"
                ) from exc
            self.store.end(journal)
        return out

    def _discard_uncommitted(self, written: list[str]) -> bool:
        """Remove files of a failed batch, except any whose row did reach the catalog.

        A commit can fail after the database applied it (a lost connection); files are removed only
        when the catalog confirms their rows are absent. If it cannot tell, the files stay and the
        start-up check removes them once the catalog is reachable (a file without a row is harmless,
        a row without a file is not). Returns whether the catalog could be asked.
        """
        if not written:
            return True
        try:
            with self.session() as session:
                committed = set(
                    session.scalars(select(Instance.path).where(Instance.path.in_(written)))
                )
        except SQLAlchemyError:
            log.error("catalog unreachable; %d files left for the start-up check", len(written))
            return False
        for relative in written:
            if relative not in committed:
                with contextlib.suppress(StorageError):
                    self.store.remove(relative)
        return True

    def _series_for(
        self,
        session: Session,
        p: ParsedInstance,
        patients: dict[tuple[str, str, str], Patient],
        studies: dict[str, Study],
        series_by_uid: dict[str, Series],
    ) -> Series:
        series = series_by_uid.get(p.series_instance_uid)
        if series is None:
            series = session.scalar(
                select(Series)
                .options(joinedload(Series.study))
                .where(Series.series_instance_uid == p.series_instance_uid)
            )
        if series is not None and series.study.study_instance_uid != p.study_instance_uid:
            raise InstanceRejected(
                f"SeriesInstanceUID {p.series_instance_uid} belongs to study "
                f"{series.study.study_instance_uid}, not {p.study_instance_uid}"
            )
        if series is None:
            study = studies.get(p.study_instance_uid) or session.scalar(
                select(Study).where(Study.study_instance_uid == p.study_instance_uid)
            )
            if study is None:
                key = (p.patient["patient_id"], p.patient["patient_name"], p.patient["birth_date"])
                patient = patients.get(key) or session.scalar(
                    select(Patient).where(
                        Patient.patient_id == key[0],
                        Patient.patient_name == key[1],
                        Patient.birth_date == key[2],
                    )
                )
                if patient is None:
                    patient = Patient(**p.patient)
                    session.add(patient)
                patients[key] = patient
                study = Study(study_instance_uid=p.study_instance_uid, patient=patient, **p.study)
                session.add(study)
            series = Series(series_instance_uid=p.series_instance_uid, study=study, **p.series)
            session.add(series)
            modality = p.series["modality"]
            if modality:
                present = set(filter(None, (study.modalities_in_study or "").split("\\")))
                study.modalities_in_study = "\\".join(sorted(present | {modality}))[:256]
        studies[p.study_instance_uid] = series.study
        series_by_uid[p.series_instance_uid] = series
        return series

    # -- consistency ----------------------------------------------------------------------------

    def recover(self, *, full: bool = False) -> RecoveryReport:
        """Clean up after interrupted ingests: temporary files, and files without a catalog row.

        By default only the places named in leftover journal entries are looked at (cheap, run at
        start-up). ``full`` walks every stored file and also lists catalog rows without a file.
        """
        temp = orphans = 0
        missing: tuple[str, ...] = ()
        with self._write_lock(), self.session() as session:
            for entry, relatives in self.store.pending():
                cataloged = set(
                    session.scalars(select(Instance.path).where(Instance.path.in_(relatives)))
                )
                for relative in relatives:
                    temp += self.store.remove_temp_files_of(relative)
                    if relative not in cataloged and self.store.absolute(relative).exists():
                        self.store.remove(relative)
                        orphans += 1
                self.store.end(entry)
            if full:
                temp += self.store.remove_temp_files()
                cataloged = set(session.scalars(select(Instance.path)))
                on_disk: set[str] = set()
                for relative in self.store.iter_files():
                    if relative in cataloged:
                        on_disk.add(relative)
                    else:
                        self.store.remove(relative)
                        orphans += 1
                missing = tuple(sorted(cataloged - on_disk))
        if temp or orphans or missing:
            log.warning(
                "archive recovery: %d temp files, %d orphan files removed; %d rows without file",
                temp,
                orphans,
                len(missing),
            )
        return RecoveryReport(temp, orphans, missing)

    def verify(self) -> list[str]:
        """Paths of stored files whose content no longer matches the catalog's sha256."""
        with self.session() as session:
            rows = session.execute(select(Instance.path, Instance.sha256)).all()
        damaged: list[str] = []
        for relative, digest in rows:
            path = self.store.absolute(relative)
            try:
                with path.open("rb") as handle:
                    actual = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError:
                continue  # missing files are reported by recover()
            if actual != digest:
                damaged.append(relative)
        return damaged

    # -- reading --------------------------------------------------------------------------------

    def instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[StoredInstance]:
        """Stored instances of a study, series or one instance, ordered by InstanceNumber.

        Raises :class:`NotFoundError` when nothing matches.
        """
        query = (
            select(Instance, Series.series_instance_uid, Study.study_instance_uid)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_instance_uid == study_uid)
        )
        if series_uid is not None:
            query = query.where(Series.series_instance_uid == series_uid)
        if sop_uid is not None:
            query = query.where(Instance.sop_instance_uid == sop_uid)
        query = query.order_by(
            Series.series_number, Series.id, Instance.instance_number, Instance.id
        )
        with self.session() as session:
            rows = session.execute(query).all()
        if not rows:
            raise NotFoundError("no such study, series or instance")
        return [_stored(inst, series, study) for inst, series, study in rows]

    def find_instances(self, filters: Mapping[str, str]) -> list[StoredInstance]:
        """Stored instances whose attributes match ``filters`` (keyword -> DICOM matching value)."""
        statement = build_statement(Query(Level.IMAGE, filters))
        with self.session() as session:
            rows = session.execute(statement).all()
        return [
            _stored(row.Instance, row.Series.series_instance_uid, row.Study.study_instance_uid)
            for row in rows
        ]

    def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[str]:
        """Cached DICOM JSON objects (as text) of a study, series or instance."""
        query = (
            select(Instance.metadata_json)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Study.study_instance_uid == study_uid)
        )
        if series_uid is not None:
            query = query.where(Series.series_instance_uid == series_uid)
        if sop_uid is not None:
            query = query.where(Instance.sop_instance_uid == sop_uid)
        query = query.order_by(Series.id, Instance.instance_number, Instance.id)
        with self.session() as session:
            texts = list(session.scalars(query))
        if not texts:
            raise NotFoundError("no such study, series or instance")
        return texts

    def read(self, instance: StoredInstance) -> bytes:
        """The stored bytes of an instance."""
        return self.store.read(instance.path)

    def iter_bytes(self, instances: Iterable[StoredInstance]) -> Iterator[bytes]:
        """Stored bytes of each instance in turn."""
        for instance in instances:
            yield self.read(instance)
