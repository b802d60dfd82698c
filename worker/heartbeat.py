"""The worker's signs of life, written by its main process every few seconds:

* a file, whose age the Kubernetes probe (`imgproc worker-probe`) checks: a hung event loop
  stops touching it, which `celery inspect ping` (a broker round-trip per probe) would not
  detect any better;
* a row in the database (``worker_heartbeats``), named by ``WORKER_ID``, which every task this
  worker claims records: when the rows stop, the API hands those tasks back at once
  (app.tasks.requeue) instead of after the broker's visibility timeout.

The row is written from a thread of its own, from start-up until the worker has shut down
(``worker_shutdown``: every run finished or handed back), so a warm shutdown longer than the
silence threshold never looks like a death; then the row is removed."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from celery import bootsteps
from celery.signals import worker_shutdown
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.db import make_engine
from app.tasks import crud

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


class DatabaseBeat(threading.Thread):
    """Writes this worker's row every INTERVAL_SECONDS until stopped, then removes it."""

    def __init__(self, database_url: str) -> None:
        super().__init__(name="worker-heartbeat", daemon=True)
        self.database_url = database_url
        self.stopped = threading.Event()

    def run(self) -> None:
        # An engine of its own, created in this thread after the pool forked: no connection is
        # ever shared with a pool child.
        engine = make_engine(self.database_url)
        try:
            while True:
                _write(engine, crud.record_beat)
                if self.stopped.wait(INTERVAL_SECONDS):
                    break
            _write(engine, crud.forget_worker)
        finally:
            engine.dispose()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped.set()
        self.join(timeout)


def _write(engine: Engine, statement: Callable[..., None]) -> None:
    try:
        with Session(engine) as session:
            statement(session=session, worker=WORKER_ID)
    except SQLAlchemyError as exc:  # the database away for a moment: the next beat retries
        log.warning("worker heartbeat not recorded (%s)", type(exc).__name__)


class HeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(worker, **kwargs)
        settings = get_settings()
        self.path = settings.heartbeat_file
        self.database_url = settings.database_url
        self.entry = None

    def start(self, worker):  # type: ignore[no-untyped-def]
        touch(self.path)
        self.entry = worker.timer.call_repeatedly(INTERVAL_SECONDS, touch, (self.path,), priority=10)
        beat = DatabaseBeat(self.database_url)
        beat.start()
        # Stopped only once the pool is done (worker_shutdown comes after the steps stopped).
        worker_shutdown.connect(lambda **_: beat.stop(), weak=False)

    def stop(self, worker):  # type: ignore[no-untyped-def]
        if self.entry is not None:
            self.entry.cancel()
        self.path.unlink(missing_ok=True)
