"""The archive: instance files plus their catalog, and the one ingest path every source uses."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, insert, select
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


def _exit_with_parent(parent: int) -> None:
    """In a parsing process: exit as soon as the process that started it is gone (even killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _parse_in_pool(data: bytes) -> ParsedInstance | tuple[str, str | None]:
    """:func:`parse_instance` in a parsing process: unchanged bytes are not sent back."""
    try:
        parsed = parse_instance(data)
    except InstanceRejected as exc:
        return (exc.reason, exc.sop_instance_uid)
    if not parsed.rewritten:
        parsed = dataclasses.replace(parsed, data=b"")
    return parsed


def _restore(
    outcome: ParsedInstance | tuple[str, str | None], data: bytes
) -> ParsedInstance | InstanceRejected:
    if isinstance(outcome, tuple):
        return InstanceRejected(outcome[0], outcome[1])
    if not outcome.rewritten:
        return dataclasses.replace(outcome, data=data)
    return outcome


def _conflict_reason(uid: str) -> str:
    return f"SOPInstanceUID {uid} is already stored with different content"


class Archive:
    """Stored instances and their catalog under one data directory.

    ``database_url`` defaults to SQLite at ``data_dir/catalog.sqlite``. Opening runs the schema
    migrations and the start-up consistency check (:meth:`recover`).
    """

    def __init__(
        self,
        data_dir: Path,
        database_url: str | None = None,
        *,
        recover: bool = True,
        parse_processes: int = 0,
    ):
        self.data_dir = data_dir
        self.parse_processes = parse_processes
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = FileStore(data_dir)
        self.engine: Engine = create_db_engine(
            database_url or sqlite_url(data_dir / "catalog.sqlite")
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()
        # series already in the catalog (SeriesInstanceUID -> primary key, StudyInstanceUID):
        # instances of a series being received skip looking it up again. Series are never
        # removed from the catalog; the entries are filled only after a commit.
        self._known_series: dict[str, tuple[int, str]] = {}
        with self._write_lock():
            upgrade_database(self.engine)
        if recover:
            self.recover()

    def close(self) -> None:
        """Release database connections and stop the parsing processes."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
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
        outcomes = self._parse_all([data for _, data in items])
        for index, ((source, _data), outcome) in enumerate(zip(items, outcomes, strict=True)):
            try:
                if isinstance(outcome, InstanceRejected):
                    raise outcome
                instance = outcome
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

    def _parse_all(self, datas: list[bytes]) -> list[ParsedInstance | InstanceRejected]:
        """Parse in the processes of the pool when there is one, else in this thread.

        Parsing holds the interpreter for milliseconds per instance; in other processes, ingests
        arriving on several connections at once are parsed side by side. A pool whose process
        died is replaced; the instances of that call are parsed here.
        """
        pool = self._parse_pool()
        if pool is not None:
            try:
                outcomes = list(pool.map(_parse_in_pool, datas, chunksize=4))
            except (BrokenProcessPool, OSError, RuntimeError):
                log.exception("parsing processes failed; parsing in the server process")
                with self._pool_lock:
                    if self._pool is pool:
                        self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            else:
                return [
                    _restore(outcome, data) for outcome, data in zip(outcomes, datas, strict=True)
                ]
        out: list[ParsedInstance | InstanceRejected] = []
        for data in datas:
            try:
                out.append(parse_instance(data))
            except InstanceRejected as exc:
                out.append(exc)
        return out

    def _parse_pool(self) -> ProcessPoolExecutor | None:
        if self.parse_processes <= 0:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.parse_processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_exit_with_parent,
                    initargs=(os.getpid(),),
                )
            return self._pool

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
            to_write: list[tuple[int, str | None, ParsedInstance, Series | int]] = []
            new_series = False
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
                    target: Series | int
                    try:
                        known_pk = self._known_series_pk(p)
                        if known_pk is None:
                            found = self._series_for(session, p, patients, studies, series_by_uid)
                            new_series = new_series or found.id is None
                            target = found
                        else:
                            target = known_pk
                    except InstanceRejected as exc:
                        out.append((index, _result(p, IngestStatus.REJECTED, source, exc.reason)))
                        continue
                    known[p.sop_instance_uid] = p.dataset_sha256
                    to_write.append((index, source, p, target))
                if not to_write:
                    session.rollback()
                    return out
                journal = self.store.begin(
                    [self.store.relative_path(p.sop_instance_uid) for _, _, p, _ in to_write]
                )
                instance_rows: list[dict[str, object]] = []
                for index, source, p, target in to_write:
                    relative = self.store.relative_path(p.sop_instance_uid)
                    self.store.write(relative, p.data)
                    written.append(relative)
                    instance_rows.append(
                        {
                            "sop_instance_uid": p.sop_instance_uid,
                            "series_pk": target,
                            "sop_class_uid": p.sop_class_uid,
                            "transfer_syntax_uid": p.transfer_syntax_uid,
                            "size": len(p.data),
                            "sha256": p.sha256,
                            "dataset_sha256": p.dataset_sha256,
                            "path": relative,
                            "metadata_json": p.metadata_json,
                            **p.instance,
                        }
                    )
                    out.append((index, _result(p, IngestStatus.STORED, source, None)))
                if new_series:
                    session.flush()  # primary keys of the series created by this batch
                for row in instance_rows:
                    series_ref = row["series_pk"]
                    if isinstance(series_ref, Series):
                        row["series_pk"] = series_ref.id
                # one executemany, without the ORM's per-object bookkeeping
                session.execute(insert(Instance), instance_rows)
                session.commit()
                for uid, entry in series_by_uid.items():
                    self._known_series[uid] = (entry.id, entry.study.study_instance_uid)
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

    def _known_series_pk(self, p: ParsedInstance) -> int | None:
        """The catalog key of the instance's series when a committed ingest has seen it."""
        known = self._known_series.get(p.series_instance_uid)
        if known is None:
            return None
        series_pk, study_uid = known
        if study_uid != p.study_instance_uid:
            raise InstanceRejected(
                f"SeriesInstanceUID {p.series_instance_uid} belongs to study "
                f"{study_uid}, not {p.study_instance_uid}"
            )
        return series_pk

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
