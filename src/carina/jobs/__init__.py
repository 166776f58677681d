"""Durable jobs: records in the catalog database, run on Dask distributed.

A job kind is a function ``run(params, ctx) -> dict`` registered by name
(:func:`register`); :class:`Engine` records submitted jobs through :class:`JobStore` and runs them
on a local or remote Dask cluster.
"""

from carina.jobs import kinds as _kinds  # noqa: F401  (registers the built-in kinds)
from carina.jobs.cache import ModelCache, model_cache
from carina.jobs.context import JobContext
from carina.jobs.engine import Engine
from carina.jobs.queue import Limits, fair_order
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
from carina.jobs.store import FINISHED, MAX_PRIORITY, MIN_PRIORITY, JobRecord, JobStatus, JobStore

__all__ = [
    "FINISHED",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
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
    "Limits",
    "ModelCache",
    "TransientJobError",
    "UnknownJobKind",
    "fair_order",
    "get_kind",
    "kinds",
    "model_cache",
    "register",
]
