"""Rate limits. With a Redis broker the counts live in Redis, so every API replica shares
them; in embedded mode (one process) they are kept in memory."""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import redis

from app.core.config import Settings
from app.core.redis_client import redis_client, uses_redis

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def acquire(self, key: str) -> float:
        """Counts one hit for `key`; returns 0 when allowed, else seconds to wait."""


@dataclass
class MemoryRateLimiter:
    """Sliding window over the hits of the last `window_seconds`."""

    limit: int
    window_seconds: float
    _hits: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key: str, *, now: float | None = None) -> float:
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


@dataclass
class RedisRateLimiter:
    """Fixed windows counted with INCR in Redis, shared by all API replicas. If Redis cannot
    be reached the request is allowed: the broker outage already refuses uploads with 503."""

    client: redis.Redis
    name: str
    limit: int
    window_seconds: int

    def acquire(self, key: str, *, now: float | None = None) -> float:
        moment = time.time() if now is None else now
        window = int(moment // self.window_seconds)
        counter = f"imgproc:ratelimit:{self.name}:{key}:{window}"
        try:
            with self.client.pipeline() as pipe:
                count, _ = pipe.incr(counter).expire(counter, 2 * self.window_seconds).execute()
        except redis.RedisError as exc:
            log.warning("rate limit %s not checked (%s)", self.name, exc)
            return 0.0
        if count > self.limit:
            return max(1.0, math.ceil((window + 1) * self.window_seconds - moment))
        return 0.0


def make_limiter(settings: Settings, name: str, limit: int, window_seconds: int) -> RateLimiter:
    if uses_redis(settings):
        client = redis_client(settings, connect_timeout=1, timeout=1)
        # User ids are per database: deployments sharing one Redis must not share counters.
        deployment = hashlib.sha256(settings.database_url.encode()).hexdigest()[:12]
        return RedisRateLimiter(client, f"{deployment}:{name}", limit, window_seconds)
    return MemoryRateLimiter(limit, window_seconds)
