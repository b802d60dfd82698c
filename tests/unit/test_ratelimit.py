from __future__ import annotations

from app.api.ratelimit import MemoryRateLimiter


def test_memory_limiter_slides_its_window():
    limiter = MemoryRateLimiter(limit=2, window_seconds=60)
    assert [limiter.acquire("a", now=t) for t in (0, 1)] == [0, 0]
    assert limiter.acquire("a", now=2) == 58  # the first hit leaves the window at t=60
    assert limiter.acquire("b", now=2) == 0  # keys are independent
    assert limiter.acquire("a", now=60.5) == 0
