"""The one place a Redis connection is described: a redis-py client for the API's own use
(rate-limit counters) and the URL + transport options Celery's broker connection gets. Both
follow Settings: a plain redis:// address, or Redis Sentinel (IMGPROC_REDIS_SENTINELS), where
the sentinels name the current master and every (re)connection asks them again, so clients
follow a failover by themselves.

A master that is gone, or one that became a replica (it answers READONLY), is a
``redis.ConnectionError`` with Sentinel (redis-py's SentinelManagedConnection turns READONLY
into a disconnect), and no master known at all is ``MasterNotFoundError``, a ConnectionError
too: callers treat every one of them as "the broker is unavailable" (503 + Retry-After).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.connection import parse_url
from redis.sentinel import Sentinel

from app.core.config import Settings
from app.core.metrics import REDIS_MASTER_CHANGES


def uses_redis(settings: Settings) -> bool:
    """The broker is Redis (directly or through Sentinel), not the embedded SQLite transport."""
    return settings.broker_url.startswith(("redis://", "rediss://"))


def _sentinel_kwargs(settings: Settings, connect_timeout: float, timeout: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"socket_connect_timeout": connect_timeout, "socket_timeout": timeout}
    if settings.REDIS_SENTINEL_PASSWORD:
        kwargs["password"] = settings.REDIS_SENTINEL_PASSWORD
    return kwargs


class FollowingSentinel(Sentinel):
    """redis-py's Sentinel, counting the master changes it follows (every new connection asks
    the sentinels for the master: the one place a failover shows). The first answer is no
    change; a master that is not found at all is an error of its own, not a change."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._masters: dict[str, Any] = {}
        self._lock = threading.Lock()  # connections of several threads ask at once after a failover

    def discover_master(self, service_name: str) -> Any:
        address = super().discover_master(service_name)
        with self._lock:
            previous = self._masters.get(service_name)
            self._masters[service_name] = address
        if previous is not None and previous != address:
            REDIS_MASTER_CHANGES.inc()
        return address


def redis_client(settings: Settings, *, connect_timeout: float = 1.0, timeout: float = 1.0) -> redis.Redis:
    """A client of the broker's Redis (the current master with Sentinel). Connections are
    made lazily: building it never fails on an unreachable server."""
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.broker_url, socket_connect_timeout=connect_timeout, socket_timeout=timeout)
    options = parse_url(settings.broker_url)
    options.pop("host", None)
    options.pop("port", None)
    sentinel = FollowingSentinel(
        settings.redis_sentinels,
        sentinel_kwargs=_sentinel_kwargs(settings, connect_timeout, timeout),
        socket_connect_timeout=connect_timeout,
        socket_timeout=timeout,
    )
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, **options)


def celery_broker(settings: Settings) -> tuple[str, dict[str, Any]]:
    """(broker_url, Sentinel-specific transport options) for Celery. With Sentinel the URL is
    kombu's ``sentinel://[user:pw@]host:port/db;sentinel://...`` (one entry per sentinel, the
    credentials and database of BROKER_URL) and the options name the master."""
    if not settings.redis_sentinels:
        return settings.broker_url, {}
    parts = urlsplit(settings.broker_url)
    credentials = parts.netloc.rpartition("@")[0]
    urls = []
    for host, port in settings.redis_sentinels:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        netloc = f"{credentials}@{address}" if credentials else address
        urls.append(urlunsplit(("sentinel", netloc, parts.path, parts.query, "")))
    options = {
        "master_name": settings.REDIS_SENTINEL_MASTER,
        "sentinel_kwargs": _sentinel_kwargs(settings, 3, 10),
    }
    return ";".join(urls), options
