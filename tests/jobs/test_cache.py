"""Models kept warm between jobs: the bounded LRU cache and the jobs that use it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carina.jobs import Engine, JobContext, JobStatus, ModelCache, model_cache, register
from carina.jobs.cache import size_of


@register("test.model")
def _with_model(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Loads the 'weights' file named in params through the warm cache and applies them."""
    path = str(params["weights"])
    weights, loaded = ctx.model(f"weights:{path}", lambda: np.load(path))
    x = np.asarray(params["x"], dtype=np.float64)
    return {"loaded": loaded, "y": (weights @ x).tolist()}


def test_a_second_job_finds_the_model_warm(db_url: str, tmp_path: Path) -> None:
    model_cache().clear()
    weights = np.arange(6, dtype=np.float64).reshape(2, 3)
    np.save(tmp_path / "w.npy", weights)
    other = tmp_path / "w2.npy"
    np.save(other, weights * 2)
    with Engine(db_url, n_workers=1, processes=False) as engine:
        runs = []
        for path in (tmp_path / "w.npy", tmp_path / "w.npy", other):
            job = engine.submit("test.model", {"weights": str(path), "x": [1, 1, 1]})
            runs.append(engine.wait(job.id))
    assert [r.status for r in runs] == [JobStatus.SUCCEEDED] * 3
    assert [r.result["loaded"] for r in runs if r.result] == [True, False, True]
    assert [r.result["y"] for r in runs if r.result] == [[3.0, 12.0], [3.0, 12.0], [6.0, 24.0]]
    assert "loaded in" in runs[0].log
    assert "warm from the cache" in runs[1].log


def test_least_recently_used_models_are_evicted_past_the_budget() -> None:
    cache = ModelCache(max_bytes=200, reserve_bytes=0)
    loads: list[str] = []

    def loader(name: str) -> Any:
        def load() -> np.ndarray:
            loads.append(name)
            return np.zeros(10, dtype=np.float64)  # 80 bytes

        return load

    cache.get("a", loader("a"))
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # a is now the most recent
    cache.get("c", loader("c"))  # 240 bytes > 200: b goes
    assert cache.keys() == ["a", "c"]
    _, loaded = cache.get("b", loader("b"))
    assert loaded
    assert loads == ["a", "b", "c", "b"]
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.entries) == (1, 4, 2, 2)
    assert stats.bytes == 160


def test_a_model_larger_than_the_budget_is_used_but_not_kept() -> None:
    cache = ModelCache(max_bytes=50, reserve_bytes=0)
    value, loaded = cache.get("big", lambda: np.zeros(100))
    assert loaded
    assert value.shape == (100,)
    assert cache.keys() == []


def test_the_entry_count_is_bounded_and_memory_pressure_evicts() -> None:
    cache = ModelCache(max_bytes=10**9, max_entries=2, reserve_bytes=0)
    for key in "xyz":
        cache.get(key, lambda: np.zeros(1))
    assert cache.keys() == ["y", "z"]
    # a reserve larger than any machine's memory: everything but the newest entry goes
    starving = ModelCache(max_bytes=10**9, reserve_bytes=1 << 60)
    for key in "xyz":
        starving.get(key, lambda: np.zeros(1))
    assert starving.keys() == ["z"]


def test_concurrent_jobs_load_a_model_once() -> None:
    cache = ModelCache(reserve_bytes=0)
    calls: list[int] = []
    gate = threading.Event()

    def slow() -> np.ndarray:
        calls.append(1)
        gate.wait(2)
        return np.ones(3)

    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("m", slow)[1])) for _ in range(4)
    ]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(results) == [False, False, False, True]


def test_size_of_counts_arrays_containers_and_module_parameters() -> None:
    class Tensor:
        def __init__(self, n: int) -> None:
            self.n = n

        def numel(self) -> int:
            return self.n

        def element_size(self) -> int:
            return 4

    class Module:
        def parameters(self) -> list[Tensor]:
            return [Tensor(10), Tensor(5)]

        def buffers(self) -> list[Tensor]:
            return [Tensor(1)]

    assert size_of(np.zeros((4, 4), np.float32)) == 64
    assert size_of({"a": np.zeros(2), "b": [np.zeros(1)]}) == 24
    assert size_of(Module()) == 64
    with pytest.raises(ValueError, match="at least one entry"):
        ModelCache(max_entries=0)
