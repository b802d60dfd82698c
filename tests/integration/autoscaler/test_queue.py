"""autoscaler.queue_reader against a real redis-server, with messages published and consumed by
Celery/kombu themselves (so the key layout is the real one, not our idea of it)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Queue
from kombu.message import Message

from autoscaler.queue_reader import QueueReader, QueueUnavailable, RedisSource, SecretRef, count_ours, redacted
from autoscaler.scaling import PolicyError
from tests.fixtures.ports import free_port
from tests.fixtures.redis import start_redis
from tests.support.autoscaler.harness import consumed_unacked, publish

DB = 9  # a database of the shared test Redis that only these tests use (flushed per test)


@pytest.fixture
def broker(redis_server: str) -> Iterator[str]:
    url = redis_server.rsplit("/", 1)[0] + f"/{DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def reader(url: str, *queues: str, prefix: str = "", password: str | None = None) -> QueueReader:
    return QueueReader(RedisSource(url, queues or ("imgproc",), key_prefix=prefix), password)


# --------------------------------------------------------------------------- waiting


def test_missing_keys_count_as_zero(broker: str) -> None:
    observation = reader(broker).observe()
    assert (observation.waiting, observation.in_flight, observation.ok) == (0, 0, True)


def test_waiting_sums_the_priority_sub_lists(broker: str) -> None:
    publish(broker, 2)
    publish(broker, 3, priority=5)  # kombu's default steps put 5 into "imgproc\x06\x163"
    publish(broker, 4, priority=9)
    keys = {k.decode() for k in redis.Redis.from_url(broker).keys("imgproc*")}
    assert keys == {"imgproc", "imgproc\x06\x163", "imgproc\x06\x169"}
    assert reader(broker).waiting() == 9


def test_waiting_counts_only_the_watched_queues(broker: str) -> None:
    publish(broker, 2)
    publish(broker, 5, queue="thumbnails")
    assert (reader(broker).waiting(), reader(broker, "thumbnails").waiting()) == (2, 5)
    assert reader(broker, "imgproc", "thumbnails").waiting() == 7


def test_global_key_prefix(broker: str) -> None:
    publish(broker, 3, global_keyprefix="tenant-a:")
    with consumed_unacked(broker, 1, global_keyprefix="tenant-a:"):
        observation = reader(broker, prefix="tenant-a:").observe()
        assert (observation.waiting, observation.in_flight) == (2, 1)
        assert reader(broker).observe().load == 0


# --------------------------------------------------------------------------- in flight


def test_in_flight_counts_delivered_unacked_messages(broker: str) -> None:
    publish(broker, 5)
    with consumed_unacked(broker, 3) as messages:
        client = redis.Redis.from_url(broker)
        assert client.hlen("unacked") == 3 and client.zcard("unacked_index") == 3
        observation = reader(broker).observe()
        assert (observation.waiting, observation.in_flight) == (2, 3)
        messages[0].ack()
        assert reader(broker).in_flight() == 2
    assert reader(broker).observe().load == 2


def test_in_flight_ignores_other_queues_in_the_shared_hash(broker: str) -> None:
    publish(broker, 2)
    publish(broker, 4, queue="thumbnails")
    with consumed_unacked(broker, 2), consumed_unacked(broker, 3, queue="thumbnails"):
        assert redis.Redis.from_url(broker).hlen("unacked") == 5
        assert reader(broker).in_flight() == 2
        assert reader(broker, "thumbnails").in_flight() == 3


def test_in_flight_resolves_named_exchanges_through_kombu_bindings(broker: str) -> None:
    """A message published to a named direct exchange: the unacked entry names the exchange
    and routing key only; the binding table says which queue it came from."""
    with Connection(broker) as conn:
        exchange = Exchange("media", type="direct")
        queue = Queue("imgproc", exchange, routing_key="resize")
        producer = conn.Producer()
        for _ in range(2):
            producer.publish({"x": 1}, exchange=exchange, routing_key="resize", declare=[queue], serializer="json")
        channel = conn.channel()
        got: list[Message] = []
        consumer = Consumer(channel, queues=[queue], callbacks=[lambda _b, m: got.append(m)], accept=["json"])
        consumer.consume()
        while len(got) < 2:
            conn.drain_events(timeout=2)
        assert reader(broker).in_flight() == 2
        assert reader(broker, "resize").in_flight() == 0  # the routing key is not a queue name here
        for message in got:
            message.ack()


def test_count_ours_rules() -> None:
    routes = [("", "imgproc"), ("", "other"), ("media", "resize"), ("imgproc", "imgproc"), ("x", "y")]
    tables = {"media": [("resize", "imgproc")]}
    assert count_ours(routes, tables, ["imgproc"]) == 3
    assert count_ours(routes, tables, ["other"]) == 1


def test_garbage_in_the_unacked_hash_is_not_counted(broker: str) -> None:
    client = redis.Redis.from_url(broker)
    client.hset("unacked", mapping={"a": b"not json", "b": b"[1]", "c": b'[{"body": ""}, "", "imgproc"]'})
    assert reader(broker).in_flight() == 1


# --------------------------------------------------------------------------- failures


def test_connection_refused_is_queue_unavailable_and_fast() -> None:
    dead = reader(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="ConnectionError"):
        dead.waiting()
    observation = dead.observe()
    assert not observation.ok and observation.load is None and "ConnectionError" in (observation.error or "")
    assert time.monotonic() - started < 10


def test_wrong_key_type_is_queue_unavailable(broker: str) -> None:
    redis.Redis.from_url(broker).set("imgproc", "not a list")
    with pytest.raises(QueueUnavailable, match="WRONGTYPE"):
        reader(broker).waiting()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_password_from_the_secret_wins_over_the_url() -> None:
    server = start_redis()
    try:
        redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
        url_with_stale_password = server.url.replace("redis://", "redis://:old@")
        assert reader(url_with_stale_password, password="s3cret").observe().ok
        refused = reader(server.url, password="wrong").observe()
        assert not refused.ok and "AuthenticationError" in (refused.error or "")
        assert not reader(server.url).observe().ok
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def test_stopped_server_then_restarted_recovers() -> None:
    server = start_redis()
    try:
        live = reader(server.url)
        publish(server.url, 2)
        assert live.observe().waiting == 2
        server.stop()
        assert not live.observe().ok
        server.start()  # same port, same directory (append-only file): the data is back
        assert live.observe().waiting == 2  # the pooled connection reconnects by itself
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


# --------------------------------------------------------------------------- spec parsing


@pytest.mark.parametrize(
    ("redis_spec", "url"),
    [
        ({"url": "redis://r:6379/2"}, "redis://r:6379/2"),
        ({"host": "redis-master", "port": 6380, "db": 1}, "redis://redis-master:6380/1"),
        ({"host": "redis-master"}, "redis://redis-master:6379/0"),
        ({"host": "redis-master", "tls": True}, "rediss://redis-master:6379/0"),
    ],
    ids=["url", "host-port-db", "host-defaults", "host-tls"],
)
def test_source_from_spec(redis_spec: dict, url: str) -> None:
    assert RedisSource.from_spec({"redis": redis_spec}).url == url


def test_source_from_spec_reads_queues_prefix_and_secret() -> None:
    source = RedisSource.from_spec(
        {
            "queues": ["a", "b"],
            "redis": {"host": "r", "keyPrefix": "p:", "secretRef": {"name": "redis", "key": "password"}},
        }
    )
    assert (source.queues, source.key_prefix) == (("a", "b"), "p:")
    assert source.secret_ref == SecretRef("redis", "password")
    assert len(source.lists()) == 20 and "p:b\x06\x169" in source.lists()


@pytest.mark.parametrize(
    "redis_spec",
    [
        {},
        {"url": "redis://a", "host": "b"},
        {"url": "http://a"},
        {"host": "a", "secretRef": {"name": "x"}},
        {"url": "redis://redis:port/0"},
        {"host": "r", "port": "x"},
    ],
    ids=["neither", "both", "bad-scheme", "secret-without-key", "port-not-a-number", "host-port-not-a-number"],
)
def test_invalid_source_is_a_policy_error(redis_spec: dict) -> None:
    with pytest.raises(PolicyError):
        RedisSource.from_spec({"redis": redis_spec})


def test_url_options_that_clash_with_the_readers_own_timeouts_are_overridden(broker: str) -> None:
    # A URL with ?socket_timeout= used to raise TypeError on every poll (a stuck daemon).
    observation = reader(f"{broker}?socket_timeout=5&health_check_interval=10").observe()
    assert observation.ok


def test_closing_a_reader_closes_its_connections(broker: str) -> None:
    client = redis.Redis.from_url(broker)
    before = len(client.client_list())
    for _ in range(20):  # the operator rebuilds its reader after every failed read
        one = reader(broker)
        assert one.observe().ok
        one.close()
    assert len(client.client_list()) <= before
    client.close()


def test_redacted_hides_the_password() -> None:
    assert redacted("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted("redis://:pw@host/0") == "redis://***@host/0"
    assert redacted("redis://host/0") == "redis://host/0"


# --------------------------------------------------------------------------- Sentinel


def test_source_from_spec_reads_the_sentinels() -> None:
    source = RedisSource.from_spec(
        {
            "redis": {
                "host": "r",
                "db": 3,
                "sentinel": {"addresses": ["s-0.s-headless:26379", "s-1.s-headless:26380"], "masterName": "mymaster"},
            }
        }
    )
    assert source.sentinels == (("s-0.s-headless", 26379), ("s-1.s-headless", 26380))
    assert (source.master_name, source.sentinel_auth) == ("mymaster", True)


@pytest.mark.parametrize(
    "sentinel",
    [
        {"addresses": [], "masterName": "m"},
        {"addresses": ["s:x"], "masterName": "m"},
        {"addresses": ["s:1"]},
    ],
    ids=["no-addresses", "bad-port", "no-master-name"],
)
def test_invalid_sentinel_spec_is_a_policy_error(sentinel: dict) -> None:
    with pytest.raises(PolicyError):
        RedisSource.from_spec({"redis": {"host": "r", "sentinel": sentinel}})


def test_the_reader_follows_the_master_through_a_failover(sentinel_group) -> None:
    """The queue is read from whichever server the sentinels name; after the master is killed
    and a replica promoted, the next reader (the operator rebuilds it after a failed read)
    reads the promoted one."""
    spec = {
        "redis": {
            "url": "redis://ignored:1/0",
            "secretRef": {"name": "x", "key": "y"},
            "sentinel": {
                "addresses": [f"127.0.0.1:{port}" for port in sentinel_group.sentinel_ports],
                "masterName": "mymaster",
            },
        }
    }
    source = RedisSource.from_spec(spec)
    old = sentinel_group.master_port()
    master = redis.Redis(port=old, password=sentinel_group.password)
    master.rpush("imgproc", *range(3))
    master.execute_command("WAIT", 1, 5000)  # on the replica too
    master.close()
    one = QueueReader(source, sentinel_group.password)
    assert one.observe().waiting == 3
    sentinel_group.server(old).kill()
    failed = one.observe()
    assert not failed.ok  # the master is gone: QueueUnavailable, not an exception
    one.close()
    deadline = time.monotonic() + 30
    while True:
        again = QueueReader(source, sentinel_group.password)
        observation = again.observe()
        again.close()
        if observation.ok:
            break
        assert time.monotonic() < deadline, f"no new master read within 30 s: {observation.error}"
        time.sleep(0.2)
    assert observation.waiting == 3
    assert sentinel_group.master_port() != old
