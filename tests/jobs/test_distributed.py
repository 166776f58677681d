"""Distributed mode: `carina scheduler` and `carina worker` processes, jobs placed by resources."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import typer

from carina.cli.cluster import parse_resources
from carina.jobs import Engine, JobStatus
from tests.archive.helpers import free_port
from tests.jobs.conftest import poll

_CLI = "from carina.cli.main import app; app()"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def scheduler() -> Iterator[str]:
    """A scheduler and two workers, one of them offering a GPU, as separate processes."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = [subprocess.Popen([sys.executable, "-c", _CLI, "scheduler", "--port", str(port)])]
    try:
        poll(lambda: _listening(port), timeout=30)
        for name, extra in (("cpu", []), ("gpu", ["--resources", "GPU=1"])):
            command = [sys.executable, "-c", _CLI, "worker", "--scheduler", address]
            processes.append(subprocess.Popen([*command, "--name", name, *extra]))
        yield address
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT)
        for process in reversed(processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_gpu_jobs_land_on_the_gpu_worker(scheduler: str, db_url: str) -> None:
    with Engine(db_url, scheduler=scheduler, watch_interval_s=0.1) as engine:
        assert engine.client is not None
        engine.client.wait_for_workers(2, timeout=30)
        workers = {
            info["name"]: address
            for address, info in engine.client.scheduler_info()["workers"].items()
        }
        assert set(workers) == {"cpu", "gpu"}
        # queued together, the GPU jobs wait for the one GPU worker while the other is idle
        gpu_jobs = [
            engine.submit("sleep", {"seconds": 0.3, "steps": 3}, resources={"GPU": 1})
            for _ in range(4)
        ]
        too_big = engine.submit("echo", {}, resources={"GPU": 2})
        plain = engine.submit("echo", {"plain": True})
        for job in gpu_jobs:
            done = engine.wait(job.id)
            assert done.status is JobStatus.SUCCEEDED, done.error
            assert done.worker == workers["gpu"]
            assert done.resources == {"GPU": 1}
        other = engine.wait(plain.id)
        assert other.status is JobStatus.SUCCEEDED
        assert other.worker in workers.values()
        # no worker offers two GPUs
        assert engine.get(too_big.id).status is JobStatus.QUEUED  # type: ignore[union-attr]
        assert engine.cancel(too_big.id).status is JobStatus.CANCELLED  # type: ignore[union-attr]
        # a worker process in another interpreter wrote the rows; the pids differ
        pids = engine.client.run(os.getpid)
        assert os.getpid() not in pids.values()


def test_resources_option_is_parsed() -> None:
    assert parse_resources("GPU=1, MEM=64e9") == {"GPU": 1.0, "MEM": 64e9}
    assert parse_resources("") == {}
    for bad in ("GPU", "=1", "GPU=one"):
        with pytest.raises(typer.BadParameter):
            parse_resources(bad)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def bare_scheduler() -> Iterator[str]:
    """A scheduler process with no workers."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", _CLI, "scheduler", "--port", str(port)])
    try:
        poll(lambda: _listening(port), timeout=30)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        _stop(process)


@contextlib.contextmanager
def _worker(address: str) -> Iterator[None]:
    process = subprocess.Popen([sys.executable, "-c", _CLI, "worker", "--scheduler", address])
    try:
        yield
    finally:
        _stop(process)


def test_kind_modules_reach_workers_that_join_later(bare_scheduler: str, db_url: str) -> None:
    scheduler = bare_scheduler
    with Engine(
        db_url, scheduler=scheduler, watch_interval_s=0.1, kind_modules=("tests.jobs.kinds_extra",)
    ) as engine:
        job = engine.submit("test.extra", {"x": 2})
        # no worker yet: the job waits queued
        time.sleep(0.5)
        assert engine.get(job.id).status is JobStatus.QUEUED  # type: ignore[union-attr]
        with _worker(scheduler):
            done = engine.wait(job.id, timeout=60)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"x": 2, "module": "tests.jobs.kinds_extra"}
