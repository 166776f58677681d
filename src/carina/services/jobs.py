"""The jobs engine a server runs, from its settings, and watching a project's jobs change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine as DatabaseEngine

from carina.jobs import Engine, JobRecord, JobStatus, JobStore, Limits
from carina.jobs.store import FINISHED
from carina.services.settings import Settings


def database_url(engine: DatabaseEngine) -> str:
    """The URL workers connect to the catalog with (credentials included)."""
    return engine.url.render_as_string(hide_password=False)


def jobs_engine(settings: Settings, database: DatabaseEngine) -> Engine | None:
    """An engine on ``settings.jobs_scheduler``, or on a local cluster of
    ``settings.jobs_workers`` processes; ``None`` when the server runs no jobs."""
    limits = Limits(
        per_owner=settings.jobs_max_per_user or None,
        per_project=settings.jobs_max_per_project or None,
    )
    kinds = ("carina.services.job_kinds", "carina.services.pacs_sync")
    if settings.jobs_scheduler:
        return Engine(
            database_url(database),
            scheduler=settings.jobs_scheduler,
            limits=limits,
            kind_modules=kinds,
        )
    if settings.jobs_workers == 0:
        return None
    return Engine(
        database_url(database),
        n_workers=settings.jobs_workers,
        processes=True,
        limits=limits,
        kind_modules=kinds,
        worker_env=settings.to_env(),  # archive kinds open the server's data directory
    )


class JobWatcher:
    """The changes of a project's jobs since the last look, for live progress (server-sent events).

    Each :meth:`changes` reads the project's newest jobs (and those it follows that fell out of
    that window) and returns one event per job that is new or whose state, progress or message
    changed. The first call returns the jobs that are queued or running.
    """

    WINDOW = 100

    def __init__(self, store: JobStore, project_id: int) -> None:
        self.store = store
        self.project_id = project_id
        self._seen: dict[int, tuple[str, float, str]] = {}
        self._started = False

    @staticmethod
    def event(record: JobRecord) -> dict[str, Any]:
        return {
            "id": record.id,
            "kind": record.kind,
            "state": record.status.value,
            "progress": record.progress,
            "message": record.message,
        }

    def changes(self) -> list[dict[str, Any]]:
        records = {
            r.id: r for r in self.store.list_jobs(project_id=self.project_id, limit=self.WINDOW)
        }
        for job_id, (state, _, _) in self._seen.items():
            if job_id not in records and JobStatus(state) not in FINISHED:
                record = self.store.get(job_id)
                if record is not None:
                    records[job_id] = record
        events = []
        for record in sorted(records.values(), key=lambda r: r.id):
            now = (record.status.value, record.progress, record.message)
            before = self._seen.get(record.id)
            self._seen[record.id] = now
            if before == now:
                continue
            if not self._started and record.status in FINISHED:
                continue
            events.append(self.event(record))
        self._started = True
        finished = [i for i, (s, _, _) in self._seen.items() if JobStatus(s) in FINISHED]
        for job_id in finished[: max(0, len(self._seen) - 4 * self.WINDOW)]:
            del self._seen[job_id]  # forget old finished jobs
        return events
