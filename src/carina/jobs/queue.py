"""The order in which queued jobs are handed to the cluster, and the limits that hold them back.

Queued jobs wait in the database, not in the Dask scheduler, until they may start. The engine hands
them over highest priority first; among equal priorities owners take turns (fair share): an
owner's n-th waiting job ranks behind the jobs of owners with fewer jobs running or ahead.
Per-owner and per-project limits cap how many jobs of one owner or project are with the cluster at
once, so one user's thousand jobs cannot starve everyone else.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Queued(Protocol):
    """A job as the queue sees it (a ``JobRecord`` or a ``QueueEntry``)."""

    @property
    def id(self) -> int: ...
    @property
    def owner_id(self) -> int | None: ...
    @property
    def project_id(self) -> int | None: ...
    @property
    def priority(self) -> int: ...


Q = TypeVar("Q", bound=Queued)


@dataclass(frozen=True)
class Limits:
    """How many jobs may be with the cluster at once: per owner, per project, in all (``None``:
    no limit; ``total`` ``None`` means the cluster's worker threads)."""

    per_owner: int | None = 4
    per_project: int | None = 8
    total: int | None = None

    def __post_init__(self) -> None:
        for name in ("per_owner", "per_project", "total"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit)")


def _owner(record: Queued) -> int:
    return -1 if record.owner_id is None else record.owner_id


def fair_order(waiting: Iterable[Q], running: Iterable[Queued] = ()) -> list[Q]:
    """``waiting`` in the order the engine starts them, given the jobs already ``running``."""
    load = Counter(_owner(r) for r in running)
    by_owner: dict[int, list[Q]] = {}
    for record in waiting:
        by_owner.setdefault(_owner(record), []).append(record)
    keyed: list[tuple[int, int, int, Q]] = []
    for owner, records in by_owner.items():
        records.sort(key=lambda r: (-r.priority, r.id))
        for rank, record in enumerate(records):
            keyed.append((-record.priority, load[owner] + rank, record.id, record))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def admissible(
    ordered: Sequence[Q], running: Iterable[Queued], limits: Limits, capacity: int
) -> list[Q]:
    """The jobs of ``ordered`` (already in start order) that may be handed over now without
    passing ``limits``; ``capacity`` is the total when ``limits.total`` is ``None``."""
    held = list(running)
    owners = Counter(_owner(r) for r in held)
    projects = Counter(r.project_id for r in held)
    total = limits.total if limits.total is not None else capacity
    free = total - len(held)
    chosen: list[Q] = []
    for record in ordered:
        if free <= 0:
            break
        owner, project = _owner(record), record.project_id
        if limits.per_owner is not None and owners[owner] >= limits.per_owner:
            continue
        if (
            limits.per_project is not None
            and project is not None
            and projects[project] >= limits.per_project
        ):
            continue
        chosen.append(record)
        owners[owner] += 1
        projects[project] += 1
        free -= 1
    return chosen


def positions(ordered: Sequence[Queued], dispatched: Sequence[Queued]) -> dict[int, int]:
    """1-based queue position of every queued job: those already handed to the cluster and not yet
    started come first (in id order), then the waiting ones in start order."""
    queue: list[Queued] = [*sorted(dispatched, key=lambda r: r.id), *ordered]
    return {record.id: n for n, record in enumerate(queue, start=1)}
