"""The Redis rate limiter on a real Redis: shared by replicas, failing open."""

from __future__ import annotations

import secrets

from app.api.ratelimit import RedisRateLimiter, make_limiter
from app.core.config import Settings


def test_redis_limiter_is_shared_by_replicas_and_fails_open(redis_server, tmp_path):
    settings = Settings(DATA_DIR=tmp_path, BROKER_URL=redis_server.rsplit("/", 1)[0] + "/13")
    name = f"test-{secrets.token_hex(4)}"  # the server may outlive this test (IMGPROC_TEST_REDIS_URL)
    first, second = make_limiter(settings, name, 3, 60), make_limiter(settings, name, 3, 60)  # two API replicas
    assert isinstance(first, RedisRateLimiter)
    now = 1_000_000 * 60 + 10.0
    assert [first.acquire("k", now=now), second.acquire("k", now=now), first.acquire("k", now=now)] == [0, 0, 0]
    assert second.acquire("k", now=now) == 50  # the window ends at the next whole minute
    assert first.acquire("k", now=now + 60) == 0  # a new window
    elsewhere = Settings(DATA_DIR=tmp_path, BROKER_URL=settings.BROKER_URL, DATABASE_URL="sqlite:///other.db")
    other = make_limiter(elsewhere, name, 3, 60)
    assert other.acquire("k", now=now) == 0  # another deployment on the same Redis counts apart

    unreachable = make_limiter(Settings(DATA_DIR=tmp_path, BROKER_URL="redis://127.0.0.1:1/0"), "t", 1, 60)
    assert [unreachable.acquire("k"), unreachable.acquire("k")] == [0, 0]
