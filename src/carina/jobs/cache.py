"""Loaded models kept warm in a worker process between jobs.

Loading weights often costs more than running them. Each worker process keeps what jobs load
through :meth:`JobContext.model` in one :class:`ModelCache`: least recently used entries are
evicted when the cache passes its byte budget (``CARINA_MODEL_CACHE_BYTES``, default 4 GiB) or its
entry count, or when the machine's available memory falls under a reserve
(``CARINA_MODEL_CACHE_RESERVE_BYTES``, default 1 GiB).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_RESERVE_BYTES = 1024**3


def size_of(value: Any) -> int:
    """Bytes held by ``value``: ``nbytes`` (numpy), the parameters and buffers of a module
    (PyTorch), the sizes of a tuple/list/dict's items, else ``sys.getsizeof``."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    tensors = [getattr(value, name, None) for name in ("parameters", "buffers")]
    if all(callable(t) for t in tensors):
        total = 0
        for source in tensors:
            assert callable(source)
            for tensor in source():
                total += int(tensor.numel()) * int(tensor.element_size())
        return total
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(size_of(v) for v in value)
    return sys.getsizeof(value)


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int


@dataclass
class _Entry:
    value: Any
    size: int
    load_s: float


class ModelCache:
    """A bounded least-recently-used cache of loaded models, safe across threads; one load per key
    at a time (a second job asking for a model being loaded waits for it)."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entries: int = 16,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        if max_bytes < 0 or max_entries < 1 or reserve_bytes < 0:
            raise ValueError("cache bounds must be non-negative (and at least one entry)")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.reserve_bytes = reserve_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._hits = self._misses = self._evictions = 0

    def get(self, key: str, load: Callable[[], T], size: int | None = None) -> tuple[T, bool]:
        """The model cached as ``key``, loading it with ``load()`` when absent; with whether it
        was loaded now (``False``: it came warm from the cache)."""
        with self._lock:
            entry = self._take(key)
            if entry is not None:
                return entry.value, False
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._take(key)
                if entry is not None:
                    return entry.value, False
                self._misses += 1
            started = time.perf_counter()
            value = load()
            elapsed = time.perf_counter() - started
            nbytes = size_of(value) if size is None else int(size)
            with self._lock:
                self._loading.pop(key, None)
                if nbytes <= self.max_bytes:
                    self._entries[key] = _Entry(value, nbytes, elapsed)
                    self._evict(keep=key)
            return value, True

    def _take(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self._hits += 1
        return entry

    def _evict(self, keep: str) -> None:
        def over() -> bool:
            total = sum(e.size for e in self._entries.values())
            return (
                total > self.max_bytes
                or len(self._entries) > self.max_entries
                or psutil.virtual_memory().available < self.reserve_bytes
            )

        while len(self._entries) > 1 and over():
            oldest = next(iter(self._entries))
            if oldest == keep:
                break
            del self._entries[oldest]
            self._evictions += 1

    def discard(self, key: str) -> bool:
        """Drop ``key``; whether it was cached."""
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(self._entries),
                bytes=sum(e.size for e in self._entries.values()),
            )


_PROCESS_CACHE: ModelCache | None = None
_PROCESS_LOCK = threading.Lock()


def model_cache() -> ModelCache:
    """This process's model cache, bounded by the environment's settings."""
    global _PROCESS_CACHE
    with _PROCESS_LOCK:
        if _PROCESS_CACHE is None:
            _PROCESS_CACHE = ModelCache(
                max_bytes=int(os.environ.get("CARINA_MODEL_CACHE_BYTES", DEFAULT_MAX_BYTES)),
                reserve_bytes=int(
                    os.environ.get("CARINA_MODEL_CACHE_RESERVE_BYTES", DEFAULT_RESERVE_BYTES)
                ),
            )
        return _PROCESS_CACHE
