"""Jobs benchmark: Carina's engine against plain Dask futures on the same local cluster.

Run ``python bench/jobs.py`` (a few minutes on 2 cores). Measures, in one run:

- submit-to-start latency of single jobs (database timestamps), and submit-to-result;
- throughput of 1,000 small jobs submitted at once;
- 160 long-running jobs from 8 users drained fairly: user 1 floods the queue first, the other seven
  submit after; how long each user waits for their first job to start, and each user's share of
  the jobs finished in the first half of the drain (Jain's fairness index, 1.0 = equal shares);
- memory (RSS) of the idle engine: the server process and its worker processes.

The peer is the same Dask cluster used directly (``client.submit``): no database, no limits, FIFO.
Results go to ``bench/results/jobs.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psutil
from distributed import Client
from sqlalchemy.orm import sessionmaker

from carina.auth.store import AuthStore
from carina.db import create_db_engine, sqlite_url, upgrade_database
from carina.jobs import Engine, JobStatus, Limits

RESULTS = Path(__file__).parent / "results" / "jobs.md"


def _echo(x: int) -> int:
    return x


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1024**2


def _worker_pids(client: Client) -> list[int]:
    return [int(p) for p in client.run(os.getpid).values()]


def _wait_all(engine: Engine, ids: list[int], timeout: float) -> list[datetime]:
    deadline = time.monotonic() + timeout
    finished: list[datetime] = []
    for job_id in ids:
        record = engine.wait(job_id, timeout=max(1.0, deadline - time.monotonic()), interval=0.02)
        if record.status is not JobStatus.SUCCEEDED:
            raise RuntimeError(f"job {job_id} {record.status}: {record.error}")
        assert record.finished_at is not None
        finished.append(record.finished_at)
    return finished


def _jain(shares: list[float]) -> float:
    total = sum(shares)
    squares = sum(s * s for s in shares)
    return total * total / (len(shares) * squares) if squares else 0.0


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker")
    parser.add_argument("--small", type=int, default=1000, help="small jobs for throughput")
    parser.add_argument("--long-s", type=float, default=1.0, help="seconds per long job")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--per-user", type=int, default=20, help="long jobs per user")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="carina-bench-jobs-"))
    url = sqlite_url(tmp / "carina.db")
    database = create_db_engine(url)
    upgrade_database(database)
    auth = AuthStore(sessionmaker(database))
    users = [auth.create_user(f"user{n}", None).id for n in range(1, args.users + 1)]
    database.dispose()
    slots = args.workers * args.threads
    rows: list[tuple[str, str, str]] = []

    engine = Engine(
        url,
        n_workers=args.workers,
        threads_per_worker=args.threads,
        processes=True,
        watch_interval_s=0.2,
        limits=Limits(per_owner=max(1, slots // 4), per_project=None),
    )
    engine.start()
    try:
        client = engine.client
        assert client is not None
        time.sleep(1.0)
        idle_server = _rss_mb([os.getpid()])
        idle_workers = _rss_mb(_worker_pids(client))

        # 1. latency of single jobs, one at a time
        carina_start, carina_total, dask_total = [], [], []
        for n in range(30):
            began = time.perf_counter()
            job = engine.submit("echo", {"n": n}, owner_id=users[0])
            done = engine.wait(job.id, interval=0.002)
            carina_total.append(time.perf_counter() - began)
            assert done.started_at is not None
            carina_start.append((done.started_at - done.created_at).total_seconds())
            dask_total.append(_timed(lambda n=n: client.submit(_echo, n, pure=False).result()))
        rows.append(
            (
                "submit → start, one job (median)",
                f"{statistics.median(carina_start) * 1000:.0f} ms",
                "—",
            )
        )
        rows.append(
            (
                "submit → result, one job (median)",
                f"{statistics.median(carina_total) * 1000:.0f} ms",
                f"{statistics.median(dask_total) * 1000:.1f} ms",
            )
        )

        # 2. throughput of small jobs submitted at once, spread over the users
        began = time.perf_counter()
        ids = [
            engine.submit("echo", {"n": n}, owner_id=users[n % len(users)]).id
            for n in range(args.small)
        ]
        submitted_s = time.perf_counter() - began
        _wait_all(engine, ids, timeout=1800)
        carina_s = time.perf_counter() - began
        began = time.perf_counter()
        futures = [client.submit(_echo, n, pure=False) for n in range(args.small)]
        client.gather(futures)
        dask_s = time.perf_counter() - began
        rows.append(
            (
                f"{args.small} small jobs: submitted (all recorded)",
                f"{args.small / submitted_s:.0f} jobs/s",
                "—",
            )
        )
        rows.append(
            (
                f"{args.small} small jobs: throughput to done",
                f"{args.small / carina_s:.0f} jobs/s ({carina_s:.1f} s)",
                f"{args.small / dask_s:.0f} tasks/s ({dask_s:.1f} s)",
            )
        )
        busy_workers = _rss_mb(_worker_pids(client))

        # 3. fairness: user 1 floods the queue, then seven users submit
        n_long = args.users * args.per_user
        began = time.perf_counter()
        order = [users[0]] * args.per_user + [u for _ in range(args.per_user) for u in users[1:]]
        long_ids = [
            engine.submit("sleep", {"seconds": args.long_s, "steps": 4}, owner_id=owner).id
            for owner in order
        ]
        finished = _wait_all(engine, long_ids, timeout=3600)
        drain_s = time.perf_counter() - began
        records = [engine.get(i) for i in long_ids]
        first_start: dict[int, float] = {}
        t0 = min(r.created_at for r in records if r)
        for record in records:
            assert record is not None
            assert record.started_at is not None
            wait = (record.started_at - t0).total_seconds()
            owner = record.owner_id or 0
            first_start[owner] = min(first_start.get(owner, wait), wait)
        half = sorted(finished)[len(finished) // 2]
        share = dict.fromkeys(users, 0)
        for record in records:
            assert record is not None
            assert record.finished_at is not None
            if record.finished_at <= half:
                share[record.owner_id or 0] += 1
        carina_jain = _jain([float(v) for v in share.values()])
        carina_worst_first = max(first_start.values())

        # the same flood on plain Dask: FIFO by submission
        began = time.perf_counter()
        marks: list[tuple[int, float, float]] = []

        def timed_sleep(owner: int, seconds: float) -> tuple[int, float, float]:
            start = time.time()
            time.sleep(seconds)
            return owner, start, time.time()

        t_submit = time.time()
        futures = [client.submit(timed_sleep, o, args.long_s, pure=False) for o in order]
        marks = client.gather(futures)
        dask_drain = time.perf_counter() - began
        dask_first: dict[int, float] = {}
        for owner, start, _ in marks:
            dask_first[owner] = min(dask_first.get(owner, start - t_submit), start - t_submit)
        dask_half = sorted(m[2] for m in marks)[len(marks) // 2]
        dask_share = dict.fromkeys(users, 0)
        for owner, _, end in marks:
            if end <= dask_half:
                dask_share[owner] += 1
        dask_jain = _jain([float(v) for v in dask_share.values()])
        rows.append(
            (
                f"{n_long} x {args.long_s:g} s jobs, {args.users} users, {slots} slots: drain",
                f"{drain_s:.1f} s",
                f"{dask_drain:.1f} s",
            )
        )
        rows.append(
            (
                "  longest wait of a user for their first job to start",
                f"{carina_worst_first:.1f} s",
                f"{max(dask_first.values()):.1f} s",
            )
        )
        rows.append(
            (
                "  fairness of shares in the first half (Jain, 1 = equal)",
                f"{carina_jain:.2f}",
                f"{dask_jain:.2f}",
            )
        )
        rows.append(
            (
                "  jobs of the flooding user in the first half",
                f"{share[users[0]]} of {sum(share.values())}",
                f"{dask_share[users[0]]} of {sum(dask_share.values())}",
            )
        )
        rows.append(
            (
                "memory: server process, idle engine",
                f"{idle_server:.0f} MB",
                "—",
            )
        )
        rows.append(
            (
                f"memory: {args.workers} worker processes, idle / after the small jobs",
                f"{idle_workers:.0f} / {busy_workers:.0f} MB",
                "(same processes)",
            )
        )
    finally:
        engine.close()

    lines = [
        "# Jobs: Carina's engine against plain Dask futures",
        "",
        f"Run {datetime.now().isoformat(timespec='minutes')} on {platform.node() or 'a machine'}: "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, local Dask cluster of "
        f"{args.workers} worker processes x {args.threads} threads, SQLite catalog. "
        f"Per-user limit {max(1, slots // 4)} running jobs. `python bench/jobs.py`.",
        "",
        "| measure | Carina engine | plain Dask (peer) |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "Carina records every job and state change in the catalog (the database is the source of",
        "truth), keeps waiting jobs in the database and hands them to Dask in fair order within",
        "the limits; plain Dask runs whatever it is given in submission order and forgets it on",
        "restart. The cost of that is the per-job latency and throughput difference above.",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
