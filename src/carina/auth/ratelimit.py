"""Login throttling: failed attempts counted per (user name, client address) in memory.

The counts live in the server process: they reset on restart and are not shared between worker
processes (``carina serve`` runs one). A reverse proxy limit is the place for multi-process setups.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class LoginLimiter:
    """At most ``max_failures`` failed logins per key within ``window_s`` seconds."""

    def __init__(
        self,
        max_failures: int = 5,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        horizon = self._clock() - self.window_s
        while times and times[0] < horizon:
            times.popleft()
        return times

    def blocked(self, user: str, client: str) -> bool:
        """Whether logins for ``user`` from ``client`` are refused for now."""
        with self._lock:
            return len(self._recent((user.lower(), client))) >= self.max_failures

    def failed(self, user: str, client: str) -> None:
        """Count one failed login (keys whose failures have all expired are dropped when there
        are more than ``max_keys``, so random user names cannot fill the memory)."""
        with self._lock:
            if len(self._failures) >= self.max_keys:
                for key in list(self._failures):
                    if not self._recent(key):
                        del self._failures[key]
            self._recent((user.lower(), client)).append(self._clock())

    def __len__(self) -> int:
        return len(self._failures)

    def succeeded(self, user: str, client: str) -> None:
        """Forget the failures of ``user`` from ``client``."""
        with self._lock:
            self._failures.pop((user.lower(), client), None)
