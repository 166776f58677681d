"""Durable jobs: records in the catalog database, run on Dask distributed.

A job kind is a function ``run(params, ctx) -> dict`` registered by name
(:func:`register`); :class:`Engine` records submitted jobs through :class:`JobStore` and runs them
on a local or remote Dask cluster.
"""

from carina.jobs import kinds as _kinds  # noqa: F401  (registers the built-in kinds)
from carina.jobs.context import JobContext
from carina.jobs.engine import Engine
from carina.jobs.registry import (
    JobCancelled,
    JobError,
    JobInterrupted,
    JobKind,
    JobTimedOut,
    TransientJobError,
    UnknownJobKind,
    get_kind,
    kinds,
    register,
)
from carina.jobs.store import FINISHED, JobRecord, JobStatus, JobStore

__all__ = [
    "FINISHED",
    "Engine",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobInterrupted",
    "JobKind",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "JobTimedOut",
    "TransientJobError",
    "UnknownJobKind",
    "get_kind",
    "kinds",
    "register",
]
