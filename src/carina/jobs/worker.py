"""The function a Dask worker runs for one job: claim the row, run the kind, record the outcome.

Workers open their own database connection from the URL they are given; every write names the
attempt it belongs to, so a run that was superseded, timed out or cancelled changes nothing.
"""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
import traceback

from distributed.diagnostics.plugin import WorkerPlugin
from sqlalchemy import Engine

from carina.db import create_db_engine
from carina.jobs.context import JobContext
from carina.jobs.registry import (
    JobCancelled,
    JobError,
    JobInterrupted,
    JobTimedOut,
    TransientJobError,
    UnknownJobKind,
    get_kind,
)
from carina.jobs.store import JobStore

_ENGINES: dict[str, Engine] = {}
_STOPPING: dict[str, threading.Event] = {}
_LOCK = threading.Lock()


class ImportKinds(WorkerPlugin):  # type: ignore[misc]
    """Imports modules that register job kinds on every worker, present and joining later (kinds
    of higher layers, e.g. ones that read the archive, live outside ``carina.jobs``)."""

    name = "carina-job-kinds"

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules

    def setup(self, worker: object) -> None:
        for module in self.modules:
            importlib.import_module(module)


def stopping(db_url: str) -> threading.Event:
    """Set while an engine on ``db_url`` in this process shuts down: jobs running in this process
    (an in-process cluster) stop at their next progress report, leaving their rows running."""
    with _LOCK:
        return _STOPPING.setdefault(db_url, threading.Event())


def store_for(db_url: str) -> JobStore:
    """A job store on ``db_url``, one engine per URL and process."""
    with _LOCK:
        engine = _ENGINES.get(db_url)
        if engine is None:
            engine = _ENGINES[db_url] = create_db_engine(db_url)
    return JobStore(engine)


def worker_address() -> str:
    """The address of the Dask worker running this code, or ``pid:N`` outside a worker."""
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return f"pid:{os.getpid()}"


def _backoff(store: JobStore, job_id: int, seconds: float, stop: threading.Event) -> bool:
    """Wait ``seconds``; False as soon as cancellation is requested."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if stop.wait(min(0.05, left)):
            raise JobInterrupted("the jobs engine is shutting down")
        if store.cancel_requested(job_id):
            return False
    return True


def run_job(
    db_url: str, job_id: int, backoff_s: float = 1.0, dispatched_at: int | None = None
) -> str:
    """Run job ``job_id`` to an end state; the state reached (or ``skipped``).

    ``dispatched_at``: the job's attempt count when it was handed to the cluster.
    """
    store = store_for(db_url)
    record = store.get(job_id)
    worker = worker_address()
    attempt = store.claim(job_id, worker, dispatched_at) if record is not None else None
    if record is None or attempt is None:
        return "skipped"
    try:
        kind = get_kind(record.kind)
    except UnknownJobKind as error:
        store.fail(job_id, attempt, str(error))
        return "failed"
    retries = 0
    stop = stopping(db_url)
    while True:
        ctx = JobContext(
            store, job_id, attempt, timeout_s=record.timeout_s, worker=worker, stopping=stop
        )
        try:
            result = kind.run(dict(record.params), ctx)
            if not isinstance(result, dict):
                raise JobError(f"job kind {kind.name!r} returned {type(result).__name__}")
            json.dumps(result)
        except JobInterrupted:
            return "interrupted"
        except JobCancelled:
            return "cancelled" if store.mark_cancelled(job_id, attempt) else "skipped"
        except JobTimedOut as error:
            return "failed" if store.fail(job_id, attempt, str(error)) else "skipped"
        except TransientJobError as error:
            reason = f"{type(error).__name__}: {error}"
            if attempt >= record.max_attempts:
                store.fail(
                    job_id, attempt, f"{reason} (attempt {attempt} of {record.max_attempts})"
                )
                return "failed"
            try:
                if not _backoff(store, job_id, backoff_s * 2**retries, stop):
                    store.mark_cancelled(job_id, attempt)
                    return "cancelled"
            except JobInterrupted:
                return "interrupted"
            next_attempt = store.next_attempt(job_id, attempt, reason)
            if next_attempt is None:
                return "skipped"
            attempt, retries = next_attempt, retries + 1
            continue
        except Exception as error:
            store.log(job_id, attempt, traceback.format_exc(limit=8).rstrip())
            store.fail(job_id, attempt, f"{type(error).__name__}: {error}")
            return "failed"
        return "succeeded" if store.succeed(job_id, attempt, result) else "skipped"
