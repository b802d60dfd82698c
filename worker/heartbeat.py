"""The worker's signs of life, written by its main loop every few seconds:

* a file, whose age the Kubernetes probe (`imgproc worker-probe`) checks: a hung event loop
  stops touching it, which `celery inspect ping` (a broker round-trip per probe) would not
  detect any better;
* a lease in the database (``worker_heartbeats``: alive until now + WORKER_DEAD_AFTER_SECONDS),
  named by ``WORKER_ID``, which every task this worker claims records: once a lease runs out,
  the API hands that worker's tasks back at once (app.tasks.requeue) instead of after the
  broker's visibility timeout.

Both are written from the worker's event loop, never from a thread: the prefork pool forks
new children from this process at any time, and a fork while another thread holds a lock
(an import, a connection pool) leaves the child deadlocked. The database is reached through an
engine that keeps no connection between beats, so no child ever inherits one. When a warm
shutdown begins the loop stops, so the lease is extended over the longest a running task may
still take (TASK_TIME_LIMIT); once the pool is done (``worker_shutdown``) the row is removed."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from celery import bootsteps
from celery.signals import worker_shutdown
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import make_engine
from app.tasks import crud
from app.tasks.records import utcnow

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0
# Unique per start of a worker, inherited by its pool children (forked after this import): a
# restarted container keeps its host name, and its predecessor's tasks must not look alive.
WORKER_ID = f"{socket.gethostname()}/{secrets.token_hex(4)}"


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(time.time()))


def heartbeat_age(path: Path, *, now: float | None = None) -> float | None:
    try:
        return (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return None


class Lease:
    """This worker's row in ``worker_heartbeats``."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings.database_url, pooled=False)
        self.dead_after = timedelta(seconds=settings.WORKER_DEAD_AFTER_SECONDS)
        self.longest_run = timedelta(seconds=settings.TASK_TIME_LIMIT)

    def renew(self) -> None:
        self._write(crud.record_beat, alive_until=utcnow() + self.dead_after)

    def extend_over_running_tasks(self) -> None:
        self._write(crud.record_beat, alive_until=utcnow() + self.longest_run + self.dead_after)

    def end(self) -> None:
        self._write(crud.forget_worker)
        self.engine.dispose()

    def _write(self, statement: Callable[..., None], **values: object) -> None:
        try:
            with Session(self.engine) as session:
                statement(session=session, worker=WORKER_ID, **values)
        except SQLAlchemyError as exc:  # the database away for a moment: the next beat retries
            log.warning("worker heartbeat not recorded (%s)", type(exc).__name__)


def beat(path: Path, lease: Lease) -> None:
    touch(path)
    lease.renew()


class HeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(worker, **kwargs)
        self.settings = get_settings()
        self.path = self.settings.heartbeat_file
        self.lease: Lease | None = None
        self.entry = None

    def start(self, worker):  # type: ignore[no-untyped-def]
        lease = self.lease = Lease(self.settings)
        beat(self.path, lease)
        self.entry = worker.timer.call_repeatedly(INTERVAL_SECONDS, beat, (self.path, lease), priority=10)
        # worker_shutdown comes after the pool is done: nothing of this worker runs any more.
        worker_shutdown.connect(lambda **_: lease.end(), weak=False)

    def stop(self, worker):  # type: ignore[no-untyped-def]
        if self.entry is not None:
            self.entry.cancel()
        if self.lease is not None:
            self.lease.extend_over_running_tasks()
        self.path.unlink(missing_ok=True)
