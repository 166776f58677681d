"""A catalog database and a jobs engine on an in-process Dask cluster, plus test job kinds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from carina.db import create_db_engine, sqlite_url, upgrade_database
from carina.jobs import Engine, JobContext, JobStore, TransientJobError, register


@register("test.fail")
def _fail(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.progress(0.5, "about to fail")
    raise ValueError(params.get("message", "boom"))


@register("test.flaky")
def _flaky(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Fails transiently until the attempt number reaches ``succeed_on``."""
    if ctx.attempt < int(params["succeed_on"]):
        raise TransientJobError(f"busy on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


@register("test.busy")
def _busy(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Blocks without reporting progress (cannot be interrupted cooperatively)."""
    time.sleep(float(params["seconds"]))
    return {"done": True}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path / "carina.db")
    engine = create_db_engine(url)
    upgrade_database(engine)
    engine.dispose()
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[JobStore]:
    s = JobStore(create_db_engine(db_url))
    yield s
    s.engine.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    with Engine(db_url, n_workers=2, processes=False, backoff_s=0.05, watch_interval_s=0.1) as e:
        yield e


def poll(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """The first truthy value of ``condition()``; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
