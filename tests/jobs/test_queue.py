"""Fair ordering, limits and queue positions of waiting jobs; the engine holding jobs back."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import sessionmaker

from carina.auth.store import AuthStore
from carina.jobs import Engine, JobError, JobRecord, JobStatus, JobStore, Limits, fair_order
from carina.jobs.queue import admissible, positions
from tests.jobs.conftest import poll

_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(job_id: int, owner: int | None, project: int | None = 1, priority: int = 0) -> JobRecord:
    return JobRecord(
        id=job_id,
        kind="echo",
        params={},
        owner_id=owner,
        project_id=project,
        status=JobStatus.QUEUED,
        progress=0.0,
        message="",
        log="",
        result=None,
        error="",
        resources={},
        attempts=0,
        max_attempts=1,
        timeout_s=None,
        cancel_requested=False,
        worker="",
        priority=priority,
        created_at=_T0,
        started_at=None,
        finished_at=None,
    )


def _ids(records: list[JobRecord]) -> list[int]:
    return [r.id for r in records]


def test_owners_take_turns_at_equal_priority() -> None:
    # user 1 queued five jobs before user 2 and user 3 queued theirs
    waiting = [_job(i, 1) for i in range(1, 6)] + [_job(6, 2), _job(7, 2), _job(8, 3)]
    assert _ids(fair_order(waiting)) == [1, 6, 8, 2, 7, 3, 4, 5]


def test_owners_with_running_jobs_wait_behind_idle_owners() -> None:
    waiting = [_job(1, 1), _job(2, 1), _job(3, 2)]
    running = [_job(10, 1), _job(11, 1)]
    assert _ids(fair_order(waiting, running)) == [3, 1, 2]


def test_priority_goes_first_and_orders_an_owners_own_jobs() -> None:
    waiting = [_job(1, 1), _job(2, 2), _job(3, 2, priority=5), _job(4, 1, priority=-3)]
    assert _ids(fair_order(waiting)) == [3, 1, 2, 4]


def test_admissible_respects_owner_project_and_total_limits() -> None:
    waiting = [_job(1, 1, 1), _job(2, 1, 1), _job(3, 2, 1), _job(4, 3, 2), _job(5, 4, 1)]
    running = [_job(9, 2, 1)]
    ordered = fair_order(waiting, running)
    chosen = admissible(ordered, running, Limits(per_owner=1, per_project=2, total=None), 10)
    # project 1 has one running: one more fits; user 1's first job is first in order
    assert _ids(chosen) == [1, 4]
    assert _ids(admissible(ordered, running, Limits(per_owner=None, per_project=None), 3)) == [
        1,
        4,
    ]
    assert _ids(admissible(ordered, running, Limits(None, None, total=10), 0)) == [1, 4, 5, 2, 3]


def test_positions_put_handed_over_jobs_first() -> None:
    handed = [_job(7, 1), _job(5, 2)]
    waiting = fair_order([_job(8, 1), _job(9, 3)], handed)
    assert positions(waiting, handed) == {5: 1, 7: 2, 9: 3, 8: 4}


def test_limits_and_priorities_are_validated(store: JobStore) -> None:
    with pytest.raises(ValueError, match="per_owner"):
        Limits(per_owner=0)
    with pytest.raises(JobError, match="priority"):
        store.submit("echo", priority=11)
    assert replace(_job(1, 1), priority=10).priority == 10


@pytest.fixture
def users(store: JobStore) -> list[int]:
    auth = AuthStore(sessionmaker(store.engine))
    return [auth.create_user(f"user{n}", None).id for n in (1, 2)]


def test_engine_holds_back_an_owners_jobs_past_the_limit(
    db_url: str, store: JobStore, users: list[int]
) -> None:
    one, two = users
    limits = Limits(per_owner=1, per_project=None)
    with Engine(
        db_url, n_workers=3, processes=False, watch_interval_s=0.05, limits=limits
    ) as engine:
        first = [
            engine.submit("sleep", {"seconds": 0.6, "steps": 6}, owner_id=one) for _ in range(3)
        ]
        other = engine.submit("sleep", {"seconds": 0.3, "steps": 3}, owner_id=two)
        # three worker threads, but user 1 runs one job at a time: user 2's job goes next
        where = engine.queue_positions()
        assert where[first[1].id] < where[first[2].id]
        running_of_1: list[int] = []
        while not all(r.finished for r in (store.get(j.id) for j in [*first, other]) if r):
            states = [store.get(j.id) for j in first]
            running_of_1.append(sum(1 for s in states if s and s.status is JobStatus.RUNNING))
            time.sleep(0.02)
        assert max(running_of_1) == 1
        done = [engine.wait(j.id) for j in [*first, other]]
        assert all(d.status is JobStatus.SUCCEEDED for d in done)
        assert done[3].started_at is not None
        assert done[1].started_at is not None
        assert done[3].started_at < done[1].started_at  # user 2 did not wait for user 1's queue
        starts = [d.started_at for d in done[:3]]
        assert starts == sorted(starts)  # one owner's jobs in submission order


def test_engine_starts_the_higher_priority_job_first(db_url: str, users: list[int]) -> None:
    one = users[0]
    with Engine(db_url, n_workers=1, processes=False, watch_interval_s=0.05) as engine:
        blocker = engine.submit("sleep", {"seconds": 0.5, "steps": 5}, owner_id=one)
        poll(lambda: (r := engine.get(blocker.id)) and r.status is JobStatus.RUNNING)
        low = engine.submit("echo", {"n": 1}, owner_id=one)
        high = engine.submit("echo", {"n": 2}, owner_id=one, priority=5)
        where = engine.queue_positions()
        assert where[high.id] < where[low.id]
        done_low, done_high = engine.wait(low.id), engine.wait(high.id)
        assert done_high.started_at is not None
        assert done_low.started_at is not None
        assert done_high.started_at <= done_low.started_at
        assert engine.queue_positions() == {}


def test_the_queue_reads_only_the_heads_of_each_owner_and_project(
    store: JobStore, users: list[int]
) -> None:
    one, two = users
    ids = [store.submit("echo", owner_id=one).id for _ in range(5)]
    urgent = store.submit("echo", owner_id=one, priority=3).id
    other = store.submit("echo", owner_id=two).id
    assert [e.id for e in store.queued()] == [*ids, urgent, other]
    assert [e.id for e in store.queued(heads=2)] == [ids[0], urgent, other]
    assert [e.id for e in store.queued(heads=1)] == [urgent, other]
