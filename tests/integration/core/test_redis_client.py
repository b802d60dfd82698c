"""The Redis client on a real Sentinel group (tests/fixtures/redis.py): it follows the master through a failover."""

from __future__ import annotations

import time

import redis

from app.core.config import Settings
from app.core.redis_client import redis_client
from tests.support.waiting import wait_until


def test_the_client_follows_the_master_through_a_failover(sentinel_group):
    settings = Settings(**sentinel_group.settings())
    client = redis_client(settings)
    client.set("k", "before")
    old = sentinel_group.master_port()
    assert client.connection_pool.get_master_address()[1] == old
    admin = redis.Redis(port=sentinel_group.sentinel_ports[0], password=sentinel_group.password)
    admin.execute_command("SENTINEL", "FAILOVER", "mymaster")
    wait_until(lambda: sentinel_group.master_port() not in (None, old), timeout=30, what="a new master")
    # (A write that reaches the old master between the promotion and its demotion is lost when
    # it resyncs: asynchronous replication. The reconciler re-enqueues such a task.)
    demoted = sentinel_group.server(old)
    wait_until(lambda: sentinel_group.role(demoted) == "slave", timeout=30, what="old master demoted")
    # The old master is a replica now: a write through the old connection answers READONLY,
    # which the Sentinel-managed connection turns into a reconnect to the new master.
    deadline = time.monotonic() + 15
    while True:
        try:
            client.set("k", "after")
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the client never found the new master"
            time.sleep(0.1)
    assert client.connection_pool.get_master_address()[1] != old
    assert client.get("k") == b"after"
