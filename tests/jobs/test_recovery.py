"""After a restart the engine resubmits what the database says is unfinished."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carina.jobs import Engine, JobError, JobStatus, JobStore
from tests.jobs.conftest import poll


def test_queued_and_running_rows_are_resubmitted_at_start(db_url: str, store: JobStore) -> None:
    queued = store.submit("echo", {"n": 1})
    running = store.submit("echo", {"n": 2})
    assert store.claim(running.id, "tcp://10.0.0.9:40000") == 1
    finished = store.submit("echo", {"n": 3})
    store.request_cancel(finished.id)
    with Engine(db_url, processes=False, watch_interval_s=0.1) as engine:
        first, second = engine.wait(queued.id), engine.wait(running.id)
        assert engine.recover() == []
    assert (first.status, first.result, first.attempts) == (JobStatus.SUCCEEDED, {"n": 1}, 1)
    assert (second.status, second.result, second.attempts) == (JobStatus.SUCCEEDED, {"n": 2}, 2)
    assert "requeued: resubmitted at engine start" in second.log
    assert second.worker != "tcp://10.0.0.9:40000"
    assert store.get(finished.id).status is JobStatus.CANCELLED  # type: ignore[union-attr]


_CRASHING_SERVER = """
import sys, time
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from carina.jobs import Engine
engine = Engine(sys.argv[1], processes=False)
engine.start()
long = engine.submit("sleep", {"seconds": 2, "steps": 20})
waiting = engine.submit("echo", {"gpu": True}, resources={"GPU": 1})
print(long.id, waiting.id, flush=True)
time.sleep(600)
"""


def test_jobs_survive_a_crash_of_the_server(db_url: str, store: JobStore, tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(_CRASHING_SERVER)
    server = subprocess.Popen(
        [sys.executable, str(script), db_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        long_id, waiting_id = (int(v) for v in server.stdout.readline().split())
        poll(lambda: (r := store.get(long_id)) and r.progress > 0)
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    # the process is gone; the rows still say where the jobs were
    before = store.get(long_id)
    assert before is not None
    assert before.status is JobStatus.RUNNING
    assert store.get(waiting_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
    with Engine(db_url, processes=False, resources={"GPU": 1}, watch_interval_s=0.1) as engine:
        resumed, ran = engine.wait(long_id), engine.wait(waiting_id)
    assert resumed.status is JobStatus.SUCCEEDED
    assert resumed.attempts == 2
    assert resumed.result == {"slept": 2.0, "worker": resumed.worker}
    assert "requeued: resubmitted at engine start" in resumed.log
    assert (ran.status, ran.result, ran.attempts) == (JobStatus.SUCCEEDED, {"gpu": True}, 1)


def test_job_of_a_killed_worker_process_runs_again(db_url: str, store: JobStore) -> None:
    with Engine(db_url, n_workers=1, processes=True, watch_interval_s=0.1) as engine:
        job = engine.submit("sleep", {"seconds": 1, "steps": 10})
        poll(lambda: (r := store.get(job.id)) and r.progress > 0)
        first = store.get(job.id)
        assert first is not None
        assert first.worker.startswith("tcp://127.0.0.1:")
        assert engine.client is not None
        pids = engine.client.run(os.getpid)
        os.kill(pids[first.worker], signal.SIGKILL)
        done = engine.wait(job.id, timeout=30)
    assert done.status is JobStatus.SUCCEEDED
    assert done.attempts == 2
    assert done.worker != first.worker
    assert f"worker {first.worker} lost; running again" in done.log


def test_closing_does_not_wait_for_running_jobs_and_the_next_start_runs_them(
    db_url: str, store: JobStore
) -> None:
    first = Engine(db_url, processes=False, watch_interval_s=0.1)
    first.start()
    job = first.submit("sleep", {"seconds": 30, "steps": 300})
    poll(lambda: (r := store.get(job.id)) and r.progress > 0)
    started = time.monotonic()
    first.close()
    assert time.monotonic() - started < 5
    interrupted = store.get(job.id)
    assert interrupted is not None
    assert interrupted.status is JobStatus.RUNNING
    assert 0 < interrupted.progress < 0.5
    with Engine(db_url, processes=False, watch_interval_s=0.1) as second:
        poll(lambda: (r := store.get(job.id)) and r.attempts == 2 and r.progress > 0)
        cancelled = second.cancel(job.id)
        assert cancelled is not None
        assert second.wait(job.id, timeout=10).status is JobStatus.CANCELLED


def test_a_stuck_job_is_cancelled_by_force_and_its_worker_restarted(
    db_url: str, store: JobStore
) -> None:
    with Engine(db_url, n_workers=1, processes=True, watch_interval_s=0.1) as engine:
        assert engine.client is not None
        # the worker process learns the test kinds (test.busy never reports progress)
        engine.client.run(importlib.import_module, "tests.jobs.conftest")
        job = engine.submit("test.busy", {"seconds": 120})
        running = poll(lambda: (r := store.get(job.id)) and r.status is JobStatus.RUNNING and r)
        pid_before = engine.client.run(os.getpid)[running.worker]
        asked = time.monotonic()
        polite = engine.cancel(job.id)
        assert polite is not None
        assert polite.status is JobStatus.RUNNING  # cooperative: it would wait 120 s
        forced = engine.cancel(job.id, force=True)
        assert forced is not None
        assert forced.status is JobStatus.CANCELLED
        assert time.monotonic() - asked < 30
        assert "cancelled by force" in forced.log
        pids = poll(lambda: engine.client.run(os.getpid) if engine.client else None)
        assert pid_before not in pids.values()
        # the cluster still runs jobs afterwards, and the cancelled one stays cancelled
        after = engine.wait(engine.submit("echo", {"ok": 1}).id, timeout=60)
        assert after.status is JobStatus.SUCCEEDED
        assert store.get(job.id).status is JobStatus.CANCELLED  # type: ignore[union-attr]


def test_force_needs_worker_processes(engine: Engine, store: JobStore) -> None:
    job = engine.submit("sleep", {"seconds": 30, "steps": 300})
    poll(lambda: (r := store.get(job.id)) and r.progress > 0)
    with pytest.raises(JobError, match="in-process worker"):
        engine.cancel(job.id, force=True)
    assert engine.wait(job.id, timeout=10).status is JobStatus.CANCELLED
