"""The embedded mode's SQLite transport: prompt hand-over after an ack, no busy polling; a
delivered message re-delivered once (and only once) its consumer's processes are all gone; a
publish beside a worker creating the tables."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Producer, Queue
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine

from app.core import embedded_broker

QUEUE = Queue("images", routing_key="images")


def broker_url(tmp_path: Path) -> str:
    return f"{embedded_broker.SCHEME}+sqlite:///{tmp_path / 'broker.sqlite'}"


def connect(tmp_path: Path, polling_interval: float) -> Connection:
    embedded_broker.register()
    return Connection(broker_url(tmp_path), transport_options={"polling_interval": polling_interval})


def publish(connection: Connection, count: int) -> None:
    producer = Producer(connection.channel(), routing_key=QUEUE.routing_key)
    for number in range(count):
        producer.publish({"n": number}, declare=[QUEUE])


def test_an_ack_ends_the_wait_for_the_next_message(tmp_path: Path) -> None:
    # A long polling interval makes the old behaviour (sleep it out while at the prefetch
    # limit) unmistakable: the second message would wait for the whole interval.
    interval = 6.0
    with connect(tmp_path, interval) as connection:
        publish(connection, 2)
        received = []
        channel = connection.channel()
        channel.basic_qos(prefetch_size=0, prefetch_count=1)
        with Consumer(channel, [QUEUE], callbacks=[lambda body, message: received.append(message)]):
            connection.drain_events(timeout=10)
            assert [message.payload for message in received] == [{"n": 0}]
            acked_at: list[float] = []

            def ack_later() -> None:
                time.sleep(0.5)  # the loop is waiting by then
                acked_at.append(time.monotonic())
                received[0].ack()

            acker = threading.Thread(target=ack_later)
            acker.start()
            connection.drain_events(timeout=10)
            delivered_at = time.monotonic()
            acker.join()
        assert [message.payload for message in received] == [{"n": 0}, {"n": 1}]
        assert delivered_at - acked_at[0] < interval / 3


def test_an_empty_queue_is_polled_at_the_interval_not_in_a_busy_loop(tmp_path: Path) -> None:
    interval = 0.2
    with connect(tmp_path, interval) as connection:
        channel = connection.channel()
        polls = 0
        real_get = channel._get

        def counting_get(queue):  # type: ignore[no-untyped-def]
            nonlocal polls
            polls += 1
            return real_get(queue)

        channel._get = counting_get
        with Consumer(channel, [QUEUE], callbacks=[lambda body, message: None]), pytest.raises(TimeoutError):
            connection.drain_events(timeout=1.0)
        assert 2 <= polls <= 1.0 / interval + 2


def test_delivered_messages_do_not_pile_up_in_the_broker_file(tmp_path: Path) -> None:
    with connect(tmp_path, 0.05) as connection:
        publish(connection, 5)
        channel = connection.channel()
        received = []
        with Consumer(channel, [QUEUE], callbacks=[lambda body, message: received.append(message)]):
            while len(received) < 5:
                connection.drain_events(timeout=5)
                received[-1].ack()
        assert [message.payload for message in received] == [{"n": n} for n in range(5)]
        assert channel.session.query(channel.message_cls).count() == 0


def test_a_message_unacknowledged_when_the_channel_closes_is_delivered_again(tmp_path: Path) -> None:
    # Deleting delivered rows must not lose work: kombu puts unacknowledged messages back on close.
    with connect(tmp_path, 0.05) as connection:
        publish(connection, 1)
        channel = connection.channel()
        with Consumer(channel, [QUEUE], callbacks=[lambda body, message: None]):
            connection.drain_events(timeout=5)
        channel.close()
    with connect(tmp_path, 0.05) as connection:
        redelivered = []
        with Consumer(connection.channel(), [QUEUE], callbacks=[lambda body, message: redelivered.append(body)]):
            connection.drain_events(timeout=5)
        assert redelivered == [{"n": 0}]


# A consumer in a process of its own: takes one message, never acknowledges it, says so on
# stdout, and (with FORK) forks a child that inherits its descriptors, as a pool child does.
CONSUMER = textwrap.dedent(
    """
    import os, sys, time
    from kombu import Connection, Consumer, Queue
    from app.core import embedded_broker

    embedded_broker.register()
    url, fork = sys.argv[1], sys.argv[2] == "fork"
    embedded_broker.claim_consumer(url.partition("+")[2])  # as the worker does before its pool forks
    if fork and os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    with Connection(url, transport_options={"polling_interval": 0.05}) as connection:
        got = []
        queue = Queue("images", routing_key="images")
        with Consumer(connection.channel(), [queue], callbacks=[lambda b, m: got.append(b)]):
            connection.drain_events(timeout=10)
        print("took", got[0]["n"], flush=True)
        time.sleep(600)
    """
)


def start_consumer(tmp_path: Path, *, fork: bool) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, broker_url(tmp_path), "fork" if fork else "alone"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().split() == ["took", "0"]
    return process


def receive(connection: Connection, timeout: float) -> list:
    received: list = []
    channel = connection.channel()
    with (
        Consumer(channel, [QUEUE], callbacks=[lambda body, message: received.append(body)]),
        contextlib.suppress(TimeoutError),  # nothing came
    ):
        connection.drain_events(timeout=timeout)
    return received


def test_a_message_of_a_consumer_killed_with_sigkill_is_delivered_again_at_the_next_poll(tmp_path: Path) -> None:
    """kill -9 leaves kombu no chance to hand the message back: its lease does, once the
    consumer's lock is free. The next consumer finds it on its first poll, not minutes later."""
    with connect(tmp_path, 0.05) as connection:
        publish(connection, 2)
        consumer = start_consumer(tmp_path, fork=False)
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.wait()
        started = time.monotonic()
        assert receive(connection, timeout=5) == [{"n": 0}]  # first in line again, before n=1
        assert time.monotonic() - started < 1
        sqlite_url = broker_url(tmp_path).partition("+")[2]
        mine = embedded_broker.claim_consumer(sqlite_url).name
        # The dead consumer's lock file went with its lease: only this process's is left.
        assert [p.name for p in embedded_broker.consumer_dir(sqlite_url).iterdir()] == [f"{mine}.lock"]


def test_a_message_is_not_delivered_again_while_any_process_of_its_consumer_lives(tmp_path: Path) -> None:
    """Never twice at once: the consumer's main process is gone, but a child forked from it
    (a pool process, which could be running the task) still holds the consumer's lock."""
    with connect(tmp_path, 0.05) as connection:
        publish(connection, 1)
        consumer = start_consumer(tmp_path, fork=True)
        try:
            os.kill(consumer.pid, signal.SIGKILL)  # the main process only; its child lives on
            consumer.wait()
            # Longer than a recovery round: the lease is looked at, and kept.
            assert receive(connection, timeout=embedded_broker.RECOVER_EVERY_SECONDS + 1.5) == []
        finally:
            os.killpg(consumer.pid, signal.SIGKILL)  # the child too: the session is all that is left
        assert receive(connection, timeout=embedded_broker.RECOVER_EVERY_SECONDS + 3) == [{"n": 0}]


def test_a_publish_beside_a_worker_creating_the_broker_tables_succeeds(tmp_path: Path) -> None:
    """`imgproc run` starts the API and the worker on a new broker file at once. The worker
    (another connection) creates the tables and holds the write lock meanwhile; the API's
    first publish used to find the tables missing, fail to create them ("table kombu_queue
    already exists"), and kombu's retry then declared the queue on the channel it had just
    closed: AttributeError, a 500. Now it waits for the lock and finds the tables."""
    with connect(tmp_path, 0.05) as connection:
        channel = connection.channel()  # registers kombu's table models; opens nothing yet
        worker = create_engine(f"sqlite:///{tmp_path / 'broker.sqlite'}").connect()
        worker.exec_driver_sql("PRAGMA journal_mode=WAL")
        worker.exec_driver_sql("BEGIN IMMEDIATE")
        kombu_sqlalchemy.metadata.create_all(worker)
        committer = threading.Timer(0.5, worker.commit)
        committer.start()
        try:
            producer = Producer(channel, routing_key=QUEUE.routing_key)
            producer.publish({"n": 0}, declare=[QUEUE], retry=True, retry_policy={"max_retries": 2})
        finally:
            committer.join()
            worker.close()
        assert receive(connection, timeout=5) == [{"n": 0}]


def test_a_closed_channel_used_again_is_a_connection_error_not_a_crash(tmp_path: Path) -> None:
    """kombu's publish retry may declare a queue still bound to the channel it closed: that
    must be an error kombu knows (enqueue_processing -> BrokerUnavailable -> 503), not an
    AttributeError (500)."""
    with connect(tmp_path, 0.05) as connection:
        channel = connection.channel()
        bound = QUEUE.bind(channel)
        channel.close()
        with pytest.raises(kombu_sqlalchemy.OperationalError):
            bound.declare()
