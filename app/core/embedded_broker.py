"""kombu's SQLAlchemy transport tuned for the embedded mode's SQLite broker.

The stock transport hands every transport option to create_engine() (so none can be
set) and polls once a second, which caps a local worker at about one task a second.
It also sleeps a whole polling interval while the worker is busy up to its prefetch limit,
so every task waited on average half an interval after the previous one was acknowledged;
here an acknowledgement ends that wait at once. Nor does it ever delete a delivered message;
here it is deleted once delivered."""

from __future__ import annotations

import threading
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from kombu.transport.virtual import Empty
from sqlalchemy import create_engine, event
from sqlalchemy.exc import IntegrityError

from app.core.db import configure_sqlite

SCHEME = "imgproc-sqlite"


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self):  # type: ignore[no-untyped-def]
        engine = create_engine(self.connection.client.hostname, connect_args={"timeout": 15})
        event.listen(engine, "connect", configure_sqlite)  # the same file settings as the data
        return engine

    def _get_or_create(self, queue):  # type: ignore[no-untyped-def]
        # kombu's lock is per process: the API and the worker may create the queue at once.
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()

    def _get(self, queue):  # type: ignore[no-untyped-def]
        message = super()._get(queue)  # raises Empty when nothing waits
        # kombu keeps every delivered message as an invisible row, forever, though nothing reads
        # it again (an unacknowledged one goes back as a new row): the file and every poll's
        # query would grow with each task.
        self.session.query(self.message_cls).filter(self.message_cls.visible.is_(False)).delete()
        self.session.commit()
        return message

    # With acks_late the pool acknowledges from its result thread; tell the polling loop.
    def basic_ack(self, delivery_tag, multiple=False):  # type: ignore[no-untyped-def]
        super().basic_ack(delivery_tag, multiple=multiple)
        self.connection.settled.set()

    def basic_reject(self, delivery_tag, requeue=False):  # type: ignore[no-untyped-def]
        super().basic_reject(delivery_tag, requeue=requeue)
        self.connection.settled.set()


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    polling_interval = 0.05

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.settled = threading.Event()

    def drain_events(self, connection, timeout=None):  # type: ignore[no-untyped-def]
        """kombu's loop, except that the pause between polls ends when a message is settled.

        A poll finds nothing either because the queue is empty (then the database is asked
        again after polling_interval, as before) or because the worker already holds its
        prefetch limit (then nothing can arrive before an ack, which now wakes it)."""
        started = monotonic()
        while True:
            self.settled.clear()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                self.settled.wait(self.polling_interval)
            else:
                return


def register() -> None:
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
