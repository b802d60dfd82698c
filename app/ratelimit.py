"""Sliding-window rate limits kept in the API process (per replica)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    limit: int
    window_seconds: float
    _hits: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key: str, *, now: float | None = None) -> float:
        """Counts one hit for `key`; returns 0 when allowed, else seconds to wait."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= moment - self.window_seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(1.0, math.ceil(hits[0] + self.window_seconds - moment))
            hits.append(moment)
            if len(self._hits) > 100_000:  # bound memory under a flood of distinct keys
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > moment - self.window_seconds}
            return 0.0
