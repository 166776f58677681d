"""Job kinds: a name bound to a function ``run(params, ctx) -> dict``, registered in code."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from carina.core.errors import CarinaError

if TYPE_CHECKING:
    from carina.jobs.context import JobContext

RunFunction = Callable[[dict[str, Any], "JobContext"], dict[str, Any]]


class JobError(CarinaError):
    """A job could not be submitted or run."""


class UnknownJobKind(JobError):  # noqa: N818
    """No kind of that name is registered."""


class TransientJobError(JobError):
    """A failure worth retrying (busy resource, lost connection): the job backs off and reruns."""


class JobCancelled(JobError):  # noqa: N818 - the name states what happened, as CancelledError does
    """Raised inside a job when its cancellation was requested or its run was superseded."""


class JobInterrupted(JobError):  # noqa: N818
    """Raised inside a job whose engine is shutting down; the job stays running in the database
    and is resubmitted when an engine starts again."""


class JobTimedOut(JobError):  # noqa: N818
    """Raised inside a job whose attempt ran past its time limit."""


@dataclass(frozen=True)
class JobKind:
    """A registered kind. ``remote``: may be submitted over the HTTP API."""

    name: str
    run: RunFunction
    remote: bool = False
    description: str = ""


_KINDS: dict[str, JobKind] = {}


def register(
    name: str, *, remote: bool = False, description: str = ""
) -> Callable[[RunFunction], RunFunction]:
    """Decorator registering ``run`` as the job kind ``name`` (a second registration replaces)."""

    def decorate(run: RunFunction) -> RunFunction:
        _KINDS[name] = JobKind(name, run, remote, description or (run.__doc__ or "").strip())
        return run

    return decorate


def get_kind(name: str) -> JobKind:
    """The kind registered as ``name``."""
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownJobKind(f"unknown job kind {name!r}") from None


def kinds() -> list[JobKind]:
    """Every registered kind, by name."""
    return [_KINDS[n] for n in sorted(_KINDS)]
