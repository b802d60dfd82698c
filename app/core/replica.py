"""Which database answers a read: the one place that decides.

Status reads may go to a PostgreSQL streaming replica (IMGPROC_DATABASE_REPLICA_URL). Its answer
is taken only when it cannot be worse than the primary's:

- the replica is reachable and its replay lag, measured at most every
  IMGPROC_DATABASE_REPLICA_CHECK_SECONDS, is within IMGPROC_DATABASE_REPLICA_MAX_LAG_SECONDS;
  a replica found unreachable is skipped for that long too, twice as long after each further
  failure (up to 32 times), so a replica that hangs costs one request its 2 s connect or
  statement timeout now and then, never every request;
- the caller's ``good`` predicate accepts the answer. The routes accept a row that the replica
  has and that can no longer change: a user (never modified once created), a task in a terminal
  state (the primary never moves a completed/failed task again: ``crud.finish_task`` and
  ``crud.start_processing`` only touch unfinished ones) that the primary confirms is not deleted
  (a primary-key probe), a page whose count and newest id match the primary's. A missing row
  (a task created a moment ago) or an unfinished one (perhaps already further on the primary)
  is read again from the primary, so a new task is always found and a status never goes
  backwards for a client that the primary already answered, whatever the lag;
- anything else (a connection error mid-read) also falls back to the primary.

So the replica takes the reads that are final (finished tasks, user look-ups, lists of finished
tasks), and the primary answers exactly what it answered before for the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import get_settings
from app.core.db import get_sessionmaker, make_engine
from app.core.metrics import DATABASE_REPLICA_LAG

log = logging.getLogger(__name__)
T = TypeVar("T")

# On the replica, given the primary's WAL position sampled just before: 0 when everything the
# primary had written then is replayed (also when the primary is idle), else the age of the
# last replayed commit, an upper bound of how far behind it is. NULL: not a standby.
_LAG = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL"
    " WHEN pg_last_wal_replay_lsn() >= CAST(:primary_lsn AS pg_lsn) THEN 0.0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 'Infinity')"
    " END"
)


class Replica:
    """A read replica of the primary, with a cached verdict on whether it may answer."""

    def __init__(
        self,
        replica: sessionmaker[Session],
        primary: sessionmaker[Session],
        *,
        max_lag: float,
        check_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._replica = replica
        self._primary = primary
        self.max_lag = max_lag
        self.check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._usable = False
        self._unreachable_in_a_row = 0
        self.lag: float | None = None  # seconds, from the last measurement (None: unknown)
        self.answers = {"replica": 0, "primary": 0}  # who answered read(); for tests and logs

    def measure_lag(self) -> float | None:
        """Seconds the replica is behind; None when it is unreachable or not a standby."""
        try:
            with self._primary() as primary:
                primary_lsn = primary.scalar(text("SELECT CAST(pg_current_wal_lsn() AS text)"))
            with self._replica() as replica:
                lag = replica.scalar(_LAG, {"primary_lsn": primary_lsn})
        except SQLAlchemyError as exc:
            log.debug("read replica unreachable: %s", exc)
            return None
        return None if lag is None else float(lag)

    def usable(self) -> bool:
        """Reachable and within the lag bound, as of a measurement at most check_seconds old.
        One thread measures; the others meanwhile keep the previous verdict."""
        if self._clock() - self._checked_at < self._interval() or not self._lock.acquire(blocking=False):
            return self._usable
        try:
            if self._clock() - self._checked_at >= self._interval():
                self.lag = self.measure_lag()
                DATABASE_REPLICA_LAG.set(float("inf") if self.lag is None else self.lag)
                self._unreachable_in_a_row = self._unreachable_in_a_row + 1 if self.lag is None else 0
                usable = self.lag is not None and self.lag <= self.max_lag
                if usable != self._usable:
                    state = "in use" if usable else "skipped: " + ("unreachable" if self.lag is None else "lagging")
                    log.log(logging.INFO if usable else logging.WARNING, "read replica %s (lag %s s)", state, self.lag)
                self._usable = usable
                self._checked_at = self._clock()
        finally:
            self._lock.release()
        return self._usable

    def _interval(self) -> float:
        return self.check_seconds * 2 ** min(max(self._unreachable_in_a_row - 1, 0), 5)

    def failed(self) -> None:
        """A read on the replica failed: skip it until the next measurement is due."""
        self._usable = False
        self._checked_at = self._clock()

    def read(self, primary: Session, query: Callable[[Session], T], *, good: Callable[[T], bool]) -> T:
        """``query`` answered by the replica if it is usable and ``good`` accepts its answer,
        else by ``primary``."""
        if self.usable():
            try:
                with self._replica() as session:
                    answer = query(session)
            except SQLAlchemyError as exc:
                log.warning("read on the replica failed (%s); using the primary", exc.__class__.__name__)
                self.failed()
            else:
                if good(answer):
                    self.answers["replica"] += 1
                    return answer
        self.answers["primary"] += 1
        return query(primary)


@lru_cache
def get_replica() -> Replica | None:
    settings = get_settings()
    if not settings.DATABASE_REPLICA_URL:
        return None
    engine = make_engine(settings.DATABASE_REPLICA_URL, connect_timeout=2, give_up_after_ms=2000)
    return Replica(
        sessionmaker(engine, expire_on_commit=False),
        get_sessionmaker(),
        max_lag=settings.DATABASE_REPLICA_MAX_LAG_SECONDS,
        check_seconds=settings.DATABASE_REPLICA_CHECK_SECONDS,
    )


def read(primary: Session, query: Callable[[Session], T], *, good: Callable[[T], bool]) -> T:
    """The routes' entry point: through the replica when one is configured, else on ``primary``."""
    replica = get_replica()
    if replica is None:
        return query(primary)
    return replica.read(primary, query, good=good)
