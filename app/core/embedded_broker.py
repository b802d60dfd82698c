"""kombu's SQLAlchemy transport tuned for the embedded mode's SQLite broker.

The stock transport hands every transport option to create_engine() (so none can be
set) and polls once a second, which caps a local worker at about one task a second.
It also sleeps a whole polling interval while the worker is busy up to its prefetch limit,
so every task waited on average half an interval after the previous one was acknowledged;
here an acknowledgement ends that wait at once.

Delivery follows kombu's virtual-transport semantics, which the stock transport keeps only in
the consumer's memory: a delivered message belongs to its consumer until acknowledged (then
deleted), rejected, or handed back (kombu restores unacknowledged messages when a channel
closes). The stock transport marks the row invisible and forgets it, so a consumer killed with
SIGKILL took its messages with it: they waited for the API's re-enqueueing (10 minutes).
Here the delivery is recorded as a lease (`imgproc_broker_lease`: message row -> consumer), and
each consumer holds an exclusive flock() on a file named after it for as long as any of its
processes lives. A lease whose consumer's lock can be taken belongs to processes that are all
gone (the kernel drops a flock only when the last descriptor of it closes, and the pool
children forked after the claim inherit it), so its message is made visible again: at once when
a worker starts (after a crash), and every RECOVER_EVERY_SECONDS while one runs. A message is
therefore re-delivered only once nothing can still be running it: never twice at once."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import uuid
from pathlib import Path
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, delete, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from app.core.db import configure_sqlite

SCHEME = "imgproc-sqlite"
# How often a running consumer looks for leases of dead consumers (one indexed query). A worker
# that starts looks at once, which is the case that matters: after a crash, the restart.
RECOVER_EVERY_SECONDS = 2.0

log = logging.getLogger(__name__)

_lease_metadata = MetaData()
lease_table = Table(
    "imgproc_broker_lease",
    _lease_metadata,
    # kombu_message.id of a delivered, not yet settled message (no foreign key: kombu's
    # tables are kombu's, and a row and its lease always change in one transaction).
    Column("message_id", Integer, primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
)


def consumer_dir(sqlite_url: str) -> Path:
    """Where the consumers' lock files live: beside the broker's database file."""
    database = make_url(sqlite_url).database or ""
    return Path(database).resolve().parent / (Path(database).name + ".consumers")


class Consumer:
    """This process's identity as a consumer, and the flock that says it is alive."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.name = uuid.uuid4().hex
        self.path = directory / f"{self.name}.lock"
        # Locked before it has its name: a recovery sweeping the directory must never find the
        # file of a live consumer unlocked (it would take it for dead and remove it).
        pending = directory / f".{self.name}.pending"
        self.fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.rename(pending, self.path)
        # Inheritable on purpose: pool children forked later hold the lock too, so it is free
        # only when the last process that could be running a delivered task is gone.
        os.set_inheritable(self.fd, True)


_consumers: dict[Path, Consumer] = {}  # one per broker file (one in practice; tests use several)
_consumers_lock = threading.Lock()


def claim_consumer(sqlite_url: str) -> Consumer:
    """This process's consumer identity on that broker (created once). The worker claims it at
    start, before its pool forks; a consumer that never claimed gets one at its first delivery."""
    directory = consumer_dir(sqlite_url)
    with _consumers_lock:
        if directory not in _consumers:
            _consumers[directory] = Consumer(directory)
        return _consumers[directory]


def consumer_is_gone(directory: Path, name: str) -> bool:
    """Whether no process holds the consumer's lock any more (never blocks)."""
    path = directory / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True  # removed by an earlier recovery, or the directory was wiped
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)  # under the lock: nobody else can be using it
        return True
    finally:
        os.close(fd)


# A message made visible again gets back its place at the head of the queue. kombu's rows have
# no send time until their first update (`timestamp` is only an onupdate column, and the poll
# orders by it: NULL first, then by id), so delivering one stamps it, and restoring it with the
# stamp kept would queue it behind every message that was never delivered.
VISIBLE_AGAIN = {"visible": True, "timestamp": None}


class Channel(kombu_sqlalchemy.Channel):
    _last_recovery: float | None = None

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._rows: dict[str, int] = {}  # delivery tag -> kombu_message.id, while leased

    def _engine_from_config(self):  # type: ignore[no-untyped-def]
        engine = create_engine(self.connection.client.hostname, connect_args={"timeout": 15})
        event.listen(engine, "connect", configure_sqlite)  # the same file settings as the data
        return engine

    def _open(self):  # type: ignore[no-untyped-def]
        """kombu's, except that the tables are created under the write lock.

        kombu checks which tables exist and then creates the missing ones, unlocked: the API and
        the worker opening a new broker file at once (`imgproc run` starts both) could both find
        a table missing, and one failed with "table kombu_queue already exists". kombu takes that
        OperationalError for a lost connection; its publish retry then closed the channel and
        re-declared the queue on it, and the upload answered 500 (AttributeError: 'NoneType'
        object has no attribute 'client'). Under BEGIN IMMEDIATE the second one waits (busy_timeout)
        and then finds the tables there."""
        if self.connection is None:
            # A closed channel used again (kombu's publish retry re-declares a queue still bound
            # to the channel it collected): a connection error, so that the publish fails
            # cleanly (BrokerUnavailable: 503 + Retry-After) rather than with an AttributeError.
            raise kombu_sqlalchemy.OperationalError("channel closed", None, Exception("channel closed"))
        hostname = self.connection.client.hostname
        with kombu_sqlalchemy._MUTEX:
            if hostname not in self._engines:
                engine = self._engine_from_config()
                with engine.connect() as connection:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                    kombu_sqlalchemy.metadata.create_all(connection)
                    _lease_metadata.create_all(connection)
                    connection.commit()
                self._engines[hostname] = engine, sessionmaker(bind=engine)
            return self._engines[hostname]

    def _begin_immediate(self) -> None:
        # The write lock up front: busy_timeout covers waiting for it. A deferred transaction
        # that read first and then writes beside another writer fails at once with "database
        # is locked" (SQLite cannot upgrade a stale read snapshot), which busy_timeout does not cover.
        self.session.connection().exec_driver_sql("BEGIN IMMEDIATE")

    def _get_or_create(self, queue):  # type: ignore[no-untyped-def]
        # kombu's lock is per process: the API and the worker may create the queue at once.
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()

    def _put(self, queue, payload, **kwargs):  # type: ignore[no-untyped-def]
        obj = self._get_or_create(queue)
        self.session.commit()  # end the read of _get_or_create before taking the write lock
        try:
            self._begin_immediate()
            self.session.add(self.message_cls(kombu_sqlalchemy.dumps(payload), obj))
            self.session.commit()
        except kombu_sqlalchemy.OperationalError:
            self.session.rollback()
            raise

    def _get(self, queue):  # type: ignore[no-untyped-def]
        consumer = claim_consumer(self.connection.client.hostname)
        now = monotonic()
        if self._last_recovery is None or now - self._last_recovery >= RECOVER_EVERY_SECONDS:
            self.recover_dead_consumers()
            self._last_recovery = now
        obj = self._get_or_create(queue)
        self.session.commit()
        self._begin_immediate()
        try:
            msg = (
                self.session.query(self.message_cls)
                .filter(self.message_cls.queue_id == obj.id, self.message_cls.visible.is_(True))
                .order_by(self.message_cls.sent_at, self.message_cls.id)
                .limit(1)
                .first()
            )
            if msg is None:
                raise Empty()
            msg.visible = False
            self.session.execute(insert(lease_table).values(message_id=msg.id, owner=consumer.name))
            payload = kombu_sqlalchemy.loads(bytes_to_str(msg.payload))
            row_id = msg.id
        finally:
            self.session.commit()
        self._rows[payload["properties"]["delivery_tag"]] = row_id
        return payload

    def _settle(self, delivery_tag: str, *, requeue: bool) -> None:
        """Deletes a settled message, or makes a handed-back one visible again, with its lease."""
        row_id = self._rows.pop(delivery_tag, None)
        if row_id is None:
            return
        # Its own connection: with acks_late the pool may settle from another thread than the
        # one polling on self.session (a Session is not thread-safe).
        message = self.message_cls.__table__
        with self._engine().connect() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            if requeue:
                connection.execute(update(message).where(message.c.id == row_id).values(VISIBLE_AGAIN))
            else:
                connection.execute(delete(message).where(message.c.id == row_id))
            connection.execute(delete(lease_table).where(lease_table.c.message_id == row_id))
            connection.commit()

    def _engine(self):  # type: ignore[no-untyped-def]
        engine, _ = self._open()
        return engine

    def recover_dead_consumers(self) -> int:
        """Makes the messages leased to consumers whose processes are all gone visible again
        (and, once, rows an older version left invisible without a lease). Returns how many."""
        directory = consumer_dir(self.connection.client.hostname)
        mine = claim_consumer(self.connection.client.hostname).name
        if self._last_recovery is None:
            # Once per channel: the files of consumers that stopped holding nothing (a clean exit).
            for path in directory.glob("*.lock"):
                if path.stem != mine:
                    consumer_is_gone(directory, path.stem)
        message = self.message_cls.__table__
        engine = self._engine()
        with engine.connect() as connection:
            owners = connection.scalars(select(lease_table.c.owner).where(lease_table.c.owner != mine).distinct())
            dead = [owner for owner in owners if consumer_is_gone(directory, owner)]
            connection.rollback()
            leased = select(lease_table.c.message_id)
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            restored = 0
            for owner in dead:
                ids = select(lease_table.c.message_id).where(lease_table.c.owner == owner)
                made_visible = update(message).where(message.c.id.in_(ids)).values(VISIBLE_AGAIN)
                restored += connection.execute(made_visible).rowcount
                connection.execute(delete(lease_table).where(lease_table.c.owner == owner))
            # The old transport's invisible rows have no lease and no owner left to settle them.
            restored += connection.execute(
                update(message).where(message.c.visible.is_(False), message.c.id.not_in(leased)).values(VISIBLE_AGAIN)
            ).rowcount
            connection.commit()
        if restored:
            log.warning("made %d message(s) of %d stopped consumer(s) visible again", restored, len(dead))
        return restored

    # With acks_late the pool acknowledges from its result thread; tell the polling loop.
    def basic_ack(self, delivery_tag, multiple=False):  # type: ignore[no-untyped-def]
        super().basic_ack(delivery_tag, multiple=multiple)
        self._settle(delivery_tag, requeue=False)
        self.connection.settled.set()

    def basic_reject(self, delivery_tag, requeue=False):  # type: ignore[no-untyped-def]
        super().basic_reject(delivery_tag, requeue=requeue)  # a requeue goes through _restore
        self._settle(delivery_tag, requeue=False)
        self.connection.settled.set()

    def _restore(self, message):  # type: ignore[no-untyped-def]
        # A message handed back (rejected with requeue, or unacknowledged when the channel
        # closes at a warm shutdown) becomes visible again in place: kombu would publish a copy
        # and leave the leased original to be recovered a second time.
        if message.delivery_tag in self._rows:
            self._settle(message.delivery_tag, requeue=True)
        else:
            super()._restore(message)


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
