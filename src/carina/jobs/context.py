"""What a running job sees: its parameters' job id, progress reporting, logging, cancellation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from carina.jobs.cache import model_cache
from carina.jobs.registry import JobCancelled, JobInterrupted, JobTimedOut
from carina.jobs.store import JobStore

T = TypeVar("T")


class JobContext:
    """Handed to a kind's ``run``. :meth:`progress` is also the cancellation and time-limit point:
    it raises :class:`JobCancelled` or :class:`JobTimedOut`, so long jobs should call it often."""

    def __init__(
        self,
        store: JobStore,
        job_id: int,
        attempt: int,
        *,
        timeout_s: float | None = None,
        worker: str = "",
        stopping: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.attempt = attempt
        self.worker = worker
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._stopping = stopping

    def _limits(self) -> None:
        if self._stopping is not None and self._stopping.is_set():
            raise JobInterrupted("the jobs engine is shutting down")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise JobTimedOut(f"timed out after {self._timeout_s:g} s")

    def check(self) -> None:
        """Raise if the job should stop: engine stopping, time limit passed, cancellation
        requested."""
        self._limits()
        requested = self.store.cancel_requested(self.job_id)
        if requested:
            raise JobCancelled("cancellation requested")

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (``fraction`` in [0, 1]); raises when the job should stop."""
        self._limits()
        requested = self.store.progress(self.job_id, self.attempt, fraction, message)
        if requested is None:
            raise JobCancelled("this run no longer owns the job")
        if requested:
            raise JobCancelled("cancellation requested")

    def log(self, text: str) -> None:
        """Append a line to the job's log."""
        if not self.store.log(self.job_id, self.attempt, text):
            raise JobCancelled("this run no longer owns the job")

    def model(self, key: str, load: Callable[[], T], size: int | None = None) -> tuple[T, bool]:
        """The model ``key`` from this worker's warm cache, loaded with ``load()`` on a miss; with
        whether it was loaded by this call. Keys must name the weights' version (e.g. a digest),
        so that new weights never come back stale."""
        started = time.perf_counter()
        value, loaded = model_cache().get(key, load, size)
        if loaded:
            self.log(f"model {key} loaded in {time.perf_counter() - started:.2f} s")
        else:
            self.log(f"model {key} warm from the cache")
        return value, loaded

    def sleep(self, seconds: float, step: float = 0.1) -> None:
        """Wait ``seconds``, checking for cancellation and the time limit every ``step``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(step, left))
            self.check()
