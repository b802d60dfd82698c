"""The embedded mode's SQLite transport: prompt hand-over after an ack, no busy polling."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Producer, Queue

from app.core import embedded_broker

QUEUE = Queue("images", routing_key="images")


def connect(tmp_path: Path, polling_interval: float) -> Connection:
    embedded_broker.register()
    url = f"{embedded_broker.SCHEME}+sqlite:///{tmp_path / 'broker.sqlite'}"
    return Connection(url, transport_options={"polling_interval": polling_interval})


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
