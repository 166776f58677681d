"""Durable job records: every state change is a conditional UPDATE of the ``jobs`` row."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from carina.db import Job, Project
from carina.jobs.registry import JobError


class JobStatus(enum.StrEnum):
    """The life of a job: queued → running → succeeded | failed | cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


MIN_PRIORITY = -10
MAX_PRIORITY = 10
FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
_LOG_LIMIT = 64_000


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive; they were written in UTC
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class JobRecord:
    """A job row read back, detached from the database."""

    id: int
    kind: str
    params: dict[str, Any]
    owner_id: int | None
    project_id: int | None
    status: JobStatus
    progress: float
    message: str
    log: str
    result: dict[str, Any] | None
    error: str
    resources: dict[str, float]
    attempts: int
    max_attempts: int
    timeout_s: float | None
    cancel_requested: bool
    worker: str
    priority: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @classmethod
    def of(cls, row: Job) -> JobRecord:
        created = _aware(row.created_at)
        assert created is not None
        return cls(
            id=row.id,
            kind=row.kind,
            params=json.loads(row.params),
            owner_id=row.owner_id,
            project_id=row.project_id,
            status=JobStatus(row.status),
            progress=row.progress,
            message=row.message,
            log=row.log,
            result=None if row.result is None else json.loads(row.result),
            error=row.error,
            resources=json.loads(row.resources),
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            timeout_s=row.timeout_s,
            cancel_requested=row.cancel_requested,
            worker=row.worker,
            priority=row.priority,
            created_at=created,
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
        )


@dataclass(frozen=True)
class QueueEntry:
    """What the engine needs to order and hand over a queued job (read without its log)."""

    id: int
    owner_id: int | None
    project_id: int | None
    priority: int
    resources: dict[str, float]
    attempts: int


def _line(text: str) -> str:
    return f"{_now().isoformat(timespec='seconds')} {text}\n"


def _append(log: str, text: str) -> str:
    joined = log + _line(text)
    return joined[-_LOG_LIMIT:]


class JobStore:
    """Reads and writes job rows. Writes by a running attempt name the attempt they belong to, so
    a superseded or finished run cannot change the row any more."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- submission and queries -------------------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        owner_id: int | None = None,
        project_id: int | None = None,
        resources: dict[str, float] | None = None,
        max_attempts: int = 1,
        timeout_s: float | None = None,
        priority: int = 0,
    ) -> JobRecord:
        """Record a new queued job (``priority`` -10..10, higher starts first)."""
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise JobError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}")
        if max_attempts < 1:
            raise JobError("max_attempts must be at least 1")
        if timeout_s is not None and timeout_s <= 0:
            raise JobError("timeout_s must be positive")
        row = Job(
            kind=kind,
            params=json.dumps(params or {}),
            owner_id=owner_id,
            project_id=project_id,
            status=JobStatus.QUEUED.value,
            progress=0.0,
            message="",
            log=_line(f"queued {kind}"),
            error="",
            resources=json.dumps(resources or {}),
            attempts=0,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            cancel_requested=False,
            worker="",
            priority=priority,
            created_at=_now(),
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            return JobRecord.of(row)

    def project_id(self, name: str) -> int | None:
        """The id of the project called ``name``."""
        with Session(self.engine) as session:
            return session.scalar(select(Project.id).where(Project.name == name))

    def get(self, job_id: int) -> JobRecord | None:
        with Session(self.engine) as session:
            row = session.get(Job, job_id)
            return None if row is None else JobRecord.of(row)

    def list_jobs(
        self,
        *,
        project_id: int | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally of one project and one status."""
        query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
        if project_id is not None:
            query = query.where(Job.project_id == project_id)
        if status is not None:
            query = query.where(Job.status == status.value)
        with Session(self.engine) as session:
            return [JobRecord.of(row) for row in session.scalars(query)]

    def queued(self, heads: int | None = None) -> list[QueueEntry]:
        """Jobs waiting to start, oldest first; with ``heads``, only the first ``heads`` of each
        owner in each project in start order (priority, then age): all a hand-over can take."""
        columns = (Job.id, Job.owner_id, Job.project_id, Job.priority, Job.resources, Job.attempts)
        if heads is None:
            query = select(*columns).where(Job.status == JobStatus.QUEUED.value).order_by(Job.id)
        else:
            rank = (
                func.row_number()
                .over(
                    partition_by=(
                        func.coalesce(Job.owner_id, -1),
                        func.coalesce(Job.project_id, -1),
                    ),
                    order_by=(Job.priority.desc(), Job.id),
                )
                .label("rank")
            )
            ranked = select(*columns, rank).where(Job.status == JobStatus.QUEUED.value).subquery()
            query = (
                select(*(ranked.c[c.key] for c in columns))
                .where(ranked.c.rank <= heads)
                .order_by(ranked.c.id)
            )
        with Session(self.engine) as session:
            return [
                QueueEntry(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])
                for row in session.execute(query)
            ]

    def unfinished(self) -> list[JobRecord]:
        """Jobs queued or running, oldest first."""
        query = (
            select(Job)
            .where(Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
            .order_by(Job.id)
        )
        with Session(self.engine) as session:
            return [JobRecord.of(row) for row in session.scalars(query)]

    # -- transitions ------------------------------------------------------------------------

    def _append_log(self, session: Session, row: Job, text: str) -> None:
        row.log = _append(row.log, text)

    def claim(self, job_id: int, worker: str, dispatched_at: int | None = None) -> int | None:
        """Start a new attempt of a queued job on ``worker``; its attempt number, or None when the
        job is not this run's to start (cancelled, finished, claimed elsewhere).

        ``dispatched_at`` is the attempt count when the job was handed to the cluster: a running
        job whose count has moved past it was started by the same hand-over, on a worker that
        died, and the executor is running it again, so this run takes over.
        """
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None:
                return None
            rerun = (
                dispatched_at is not None
                and row.status == JobStatus.RUNNING.value
                and row.attempts > dispatched_at
            )
            if row.status != JobStatus.QUEUED.value and not rerun:
                return None
            if rerun:
                self._append_log(session, row, f"worker {row.worker} lost; running again")
            row.status = JobStatus.RUNNING.value
            row.attempts += 1
            row.worker = worker
            row.started_at = _now()
            row.progress = 0.0
            row.message = ""
            self._append_log(session, row, f"attempt {row.attempts} started on {worker}")
            return row.attempts

    def next_attempt(self, job_id: int, attempt: int, reason: str) -> int | None:
        """Move a running job to its next attempt after a transient failure; None when the job is
        no longer this attempt's to run."""
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None or row.status != JobStatus.RUNNING.value or row.attempts != attempt:
                return None
            row.attempts += 1
            row.started_at = _now()
            row.progress = 0.0
            self._append_log(session, row, f"attempt {attempt} failed ({reason}); retrying")
            return row.attempts

    def progress(self, job_id: int, attempt: int, fraction: float, message: str) -> bool | None:
        """Record progress of a running attempt. Returns whether cancellation was requested, or
        None when the row is no longer this attempt's (finished, timed out, superseded)."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None or row.status != JobStatus.RUNNING.value or row.attempts != attempt:
                return None
            row.progress = fraction
            row.message = message[:512]
            return row.cancel_requested

    def log(self, job_id: int, attempt: int, text: str) -> bool:
        """Append a line to a running attempt's log."""
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None or row.status != JobStatus.RUNNING.value or row.attempts != attempt:
                return False
            self._append_log(session, row, text)
            return True

    def note(self, job_id: int, text: str) -> bool:
        """Append a line to a job's log whatever its state (engine events)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None:
                return False
            self._append_log(session, row, text)
            return True

    def cancel_requested(self, job_id: int) -> bool:
        with Session(self.engine) as session:
            return bool(
                session.scalar(select(Job.cancel_requested).where(Job.id == job_id)) or False
            )

    def _finish(
        self,
        job_id: int,
        attempt: int | None,
        status: JobStatus,
        line: str,
        *,
        result: dict[str, Any] | None = None,
        error: str = "",
        from_status: tuple[JobStatus, ...] = (JobStatus.RUNNING,),
    ) -> bool:
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None or row.status not in {s.value for s in from_status}:
                return False
            if attempt is not None and row.attempts != attempt:
                return False
            row.status = status.value
            row.finished_at = _now()
            if status is JobStatus.SUCCEEDED:
                row.progress = 1.0
                row.result = json.dumps(result or {})
            row.error = error[:4000]
            self._append_log(session, row, line)
            return True

    def succeed(self, job_id: int, attempt: int, result: dict[str, Any]) -> bool:
        return self._finish(job_id, attempt, JobStatus.SUCCEEDED, "succeeded", result=result)

    def fail(self, job_id: int, attempt: int | None, error: str) -> bool:
        """Mark a running job failed (any attempt when ``attempt`` is None)."""
        return self._finish(
            job_id,
            attempt,
            JobStatus.FAILED,
            f"failed: {error}",
            error=error,
            from_status=(JobStatus.RUNNING, JobStatus.QUEUED),
        )

    def mark_cancelled(self, job_id: int, attempt: int | None) -> bool:
        return self._finish(
            job_id,
            attempt,
            JobStatus.CANCELLED,
            "cancelled",
            from_status=(JobStatus.RUNNING, JobStatus.QUEUED),
        )

    def request_cancel(self, job_id: int) -> JobRecord | None:
        """Ask a job to stop: a queued job is cancelled at once, a running one at its next
        progress report. Finished jobs are left as they are."""
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None:
                return None
            if row.status == JobStatus.QUEUED.value:
                row.status = JobStatus.CANCELLED.value
                row.finished_at = _now()
                row.cancel_requested = True
                self._append_log(session, row, "cancelled before it started")
            elif row.status == JobStatus.RUNNING.value and not row.cancel_requested:
                row.cancel_requested = True
                self._append_log(session, row, "cancellation requested")
            return JobRecord.of(row)

    def requeue(self, job_id: int, reason: str) -> bool:
        """Put a running job back in the queue (its worker is gone); queued jobs stay queued."""
        with Session(self.engine) as session, session.begin():
            row = session.get(Job, job_id, with_for_update=True)
            if row is None or row.status not in (JobStatus.RUNNING.value, JobStatus.QUEUED.value):
                return False
            if row.status == JobStatus.RUNNING.value:
                row.status = JobStatus.QUEUED.value
                row.worker = ""
                self._append_log(session, row, f"requeued: {reason}")
            return True

    def expire(self, now: datetime | None = None) -> list[int]:
        """Fail running attempts past their time limit; the ids failed."""
        now = now or _now()
        query = select(Job).where(Job.status == JobStatus.RUNNING.value, Job.timeout_s.is_not(None))
        expired: list[int] = []
        with Session(self.engine) as session, session.begin():
            for row in session.scalars(query):
                started = _aware(row.started_at)
                assert row.timeout_s is not None
                if started is not None and now - started > timedelta(seconds=row.timeout_s):
                    row.status = JobStatus.FAILED.value
                    row.finished_at = now
                    row.error = f"timed out after {row.timeout_s:g} s"
                    self._append_log(session, row, f"failed: {row.error}")
                    expired.append(row.id)
        return expired
