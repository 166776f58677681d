"""The jobs engine: records jobs in the database and runs them on Dask distributed.

Embedded, it starts a ``LocalCluster`` in the server; distributed, it connects to a scheduler that
``carina worker`` processes join. The database stays the source of truth: on start the engine
resubmits every job left queued or running, and a watchdog fails attempts past their time limit.
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
import time
import uuid
from typing import Any

from distributed import Client, Future, LocalCluster

from carina.db import create_db_engine, upgrade_database
from carina.jobs.queue import Limits, admissible, fair_order, positions
from carina.jobs.registry import JobError, get_kind
from carina.jobs.store import JobRecord, JobStatus, JobStore, QueueEntry
from carina.jobs.worker import ImportKinds, run_job, stopping

log = logging.getLogger(__name__)


class Engine:
    """Submit, cancel and watch jobs. Use as a context manager or call :meth:`start`/:meth:`close`.

    ``scheduler`` (``tcp://host:8786``) connects to an external Dask scheduler; otherwise a local
    cluster of ``n_workers`` workers (``processes`` or threads) with ``resources`` each is started.
    Queued jobs wait in the database until ``limits`` let them start (see ``carina.jobs.queue``).
    ``kind_modules`` are imported on every worker (and here) to register kinds defined outside
    ``carina.jobs``; ``worker_env`` is added to the environment of local worker processes.
    """

    def __init__(
        self,
        db_url: str,
        *,
        scheduler: str | None = None,
        n_workers: int = 1,
        threads_per_worker: int = 1,
        processes: bool = True,
        resources: dict[str, float] | None = None,
        backoff_s: float = 1.0,
        watch_interval_s: float = 1.0,
        limits: Limits | None = None,
        kind_modules: tuple[str, ...] = (),
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.db_url = db_url
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.resources = resources
        self.backoff_s = backoff_s
        self.watch_interval_s = watch_interval_s
        self.limits = limits or Limits()
        self.kind_modules = kind_modules
        self.worker_env = worker_env
        self.store = JobStore(create_db_engine(db_url))
        self.cluster: LocalCluster | None = None
        self.client: Client | None = None
        self._futures: dict[int, Future] = {}
        self._handed: dict[int, QueueEntry] = {}  # jobs with the cluster, by id
        self._lock = threading.Lock()
        self._pump_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._watchdog: threading.Thread | None = None

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        """Connect to (or start) the cluster; resubmit the jobs a previous run left unfinished."""
        upgrade_database(self.store.engine)
        if self.scheduler:
            self.client = Client(self.scheduler, set_as_default=False)
        else:
            self.cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=self.threads_per_worker,
                processes=self.processes,
                resources=self.resources,
                # scheduler and workers always serve HTTP (health, metrics): loopback, any free port
                dashboard_address="127.0.0.1:0",
                worker_dashboard_address="127.0.0.1:0",
                # worker processes talk TCP on loopback only; threads use in-process transport
                **({"host": "127.0.0.1"} if self.processes else {}),
                # the environment of worker processes (e.g. the server's CARINA_* settings)
                **({"env": dict(self.worker_env)} if self.processes and self.worker_env else {}),
            )
            self.client = Client(self.cluster, set_as_default=False)
        if self.kind_modules:
            for module in self.kind_modules:  # this process checks kinds at submission
                importlib.import_module(module)
            self.client.register_plugin(ImportKinds(self.kind_modules))
        self.recover()
        self._stop.clear()
        self._watchdog = threading.Thread(
            target=self._watch, name="carina-jobs-watchdog", daemon=True
        )
        self._watchdog.start()

    def close(self) -> None:
        """Stop watching and disconnect without waiting for running jobs: unfinished jobs stay
        queued or running in the database for the next start."""
        self._stop.set()
        self._wake.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None
        with self._lock:
            self._futures.clear()
            self._handed.clear()
        # in-process workers end their jobs at the next progress report; worker processes of a
        # local cluster are killed by their nannies; the rows stay running for the next start
        stop = stopping(self.db_url)
        stop.set()
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        stop.clear()
        self.store.engine.dispose()

    # -- jobs -------------------------------------------------------------------------------

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
        """Record a job; it is handed to the cluster when the limits allow."""
        get_kind(kind)
        record = self.store.submit(
            kind,
            params,
            owner_id=owner_id,
            project_id=project_id,
            resources=resources,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            priority=priority,
        )
        self._wake.set()  # the watchdog thread hands it over (many submissions, one pass)
        return record

    def get(self, job_id: int) -> JobRecord | None:
        return self.store.get(job_id)

    def cancel(self, job_id: int, *, force: bool = False) -> JobRecord | None:
        """Request cancellation: queued jobs end at once, running ones at their next progress.

        ``force`` also ends a running job that reports no progress (stuck in a library call): the
        row is marked cancelled, then its worker process is restarted. Other jobs that were on
        that worker run again elsewhere, as after any lost worker. Needs worker processes.
        """
        record = self.store.request_cancel(job_id)
        if record is None:
            return None
        if force and record.status is JobStatus.RUNNING:
            if self.client is None:
                raise JobError("the jobs engine is not started")
            if not record.worker.startswith("tcp://"):
                raise JobError(
                    "a job on an in-process worker cannot be stopped by force; "
                    "it ends at its next progress report"
                )
            if self.store.mark_cancelled(job_id, record.attempts):
                self.store.note(job_id, f"cancelled by force: restarting worker {record.worker}")
                self.client.restart_workers([record.worker], raise_for_error=False)
            record = self.store.get(job_id)
            assert record is not None
        if record.status is JobStatus.CANCELLED:
            with self._lock:
                future = self._futures.pop(job_id, None)
                self._handed.pop(job_id, None)
            if future is not None:
                future.cancel()
            self._wake.set()
        return record

    def wait(self, job_id: int, timeout: float = 30.0, interval: float = 0.05) -> JobRecord:
        """Poll until the job is finished; raises :class:`TimeoutError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.store.get(job_id)
            if record is None:
                raise JobError(f"no job {job_id}")
            if record.finished:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {record.status} after {timeout} s")
            time.sleep(interval)

    def recover(self) -> list[int]:
        """Put the jobs a previous run left running back in the queue and start what the limits
        allow; the ids of the unfinished jobs taken up again."""
        ids: list[int] = []
        for record in self.store.unfinished():
            with self._lock:
                if record.id in self._futures:
                    continue
            if self.store.requeue(record.id, "resubmitted at engine start"):
                ids.append(record.id)
        self.pump()
        return ids

    def capacity(self) -> int:
        """How many jobs the cluster runs at once: the threads of its workers."""
        if self.client is None:
            return 0
        return int(sum(self.client.nthreads().values()))

    def pump(self) -> list[int]:
        """Hand the queued jobs the limits allow to the cluster, in fair order; their ids."""
        if self.client is None:
            raise JobError("the jobs engine is not started")
        with self._pump_lock:
            with self._lock:
                handed = list(self._handed.values())
            handed_ids = {r.id for r in handed}
            capacity = self.capacity()
            free = (self.limits.total or capacity) - len(handed)
            if free <= 0:
                return []
            # no owner can take more than the free slots (or their limit): read only those
            heads = min(free, self.limits.per_owner or free) + len(handed)
            waiting = [r for r in self.store.queued(heads) if r.id not in handed_ids]
            if not waiting:
                return []
            ordered = fair_order(waiting, handed)
            chosen = admissible(ordered, handed, self.limits, capacity)
            for record in chosen:
                self._dispatch(record)
            return [r.id for r in chosen]

    def queue_positions(self) -> dict[int, int]:
        """The 1-based place in the queue of every queued job (jobs handed to the cluster but
        not started yet first, then the waiting ones in the order they will start)."""
        with self._lock:
            handed = list(self._handed.values())
        handed_ids = {r.id for r in handed}
        queued = self.store.queued()
        waiting = [r for r in queued if r.id not in handed_ids]
        started = [r for r in queued if r.id in handed_ids]
        return positions(fair_order(waiting, handed), started)

    # -- internals --------------------------------------------------------------------------

    def _dispatch(self, record: QueueEntry) -> None:
        if self.client is None:
            raise JobError("the jobs engine is not started")
        future = self.client.submit(
            run_job,
            self.db_url,
            record.id,
            self.backoff_s,
            record.attempts,
            key=f"carina-job-{record.id}-{uuid.uuid4().hex[:8]}",
            pure=False,
            resources=record.resources or None,
        )
        with self._lock:
            self._futures[record.id] = future
            self._handed[record.id] = record
        future.add_done_callback(functools.partial(self._done, record.id))

    def _done(self, job_id: int, future: Future) -> None:
        with self._lock:
            if self._futures.get(job_id) is future:
                del self._futures[job_id]
                self._handed.pop(job_id, None)
        if future.status == "error" and not self._stop.is_set():
            error = future.exception()
            self.store.fail(job_id, None, f"executor error: {type(error).__name__}: {error}")
        self._wake.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.watch_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            for job_id in self.store.expire():
                with self._lock:
                    future = self._futures.pop(job_id, None)
                    self._handed.pop(job_id, None)
                if future is not None:
                    future.cancel()
            try:
                self.pump()
            except Exception:
                log.exception("handing queued jobs to the cluster failed")
