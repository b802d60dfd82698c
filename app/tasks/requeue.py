"""Re-enqueues tasks whose run died or whose message may have been lost.

Three rules, one round every RECONCILE_INTERVAL_SECONDS on every API replica:

* A processing task held by a worker whose heartbeat lease ran out (killed with its pool: OOM
  of the pod, node loss, ``kill -9``; worker.heartbeat) is handed back at once, pending again: its message sits in
  Redis's unacknowledged set until the visibility timeout (an hour), and no worker will finish
  it. Also during a backlog: that message is not in the queue.
* A pending task is one no worker has claimed, and a worker claims a message the moment it
  receives it, so a pending task whose message went out a minute ago with an empty queue has
  lost it (a broker restart without persistence, a crash between commit and enqueue, a
  worker's broker connection broken while it held a message it had not started: Celery drops
  those, and Redis gives them out again only after the visibility timeout).
* A processing task still unfinished after the long wait (a worker that never wrote a
  heartbeat, a report lost with a killed pool process) is re-sent.

The last two only while nothing waits in the queue: during a backlog an old pending task most
likely still has its message, and re-sending every such task each round would snowball the
queue with duplicates. A lost message is found once the backlog drains. Processing is
idempotent, so the occasional duplicate is harmless."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.metrics import TASKS_REQUEUED
from app.tasks import crud
from app.tasks.records import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequeueAfter:
    """Seconds after which each rule applies."""

    processing: int  # since the message was sent
    pending: int  # since the message was sent (the shorter of this and ``processing``)

    @classmethod
    def from_settings(cls, settings: Settings) -> RequeueAfter:
        return cls(
            processing=settings.RECONCILE_AFTER_SECONDS,
            pending=settings.RECONCILE_PENDING_AFTER_SECONDS,
        )


def requeue_stale(
    *,
    session: Session,
    enqueue: Callable[[int], None],
    waiting: Callable[[], int],
    after: RequeueAfter,
) -> list[int]:
    """Returns the ids re-enqueued. Stops at the first enqueue failure (broker down)."""
    now = utcnow()
    requeued = _hand_back_from_dead_workers(session, enqueue, now)
    if waiting() > 0:
        return requeued
    stale = crud.stale_unfinished_tasks(
        session=session,
        older_than=now - timedelta(seconds=after.processing),
        pending_older_than=now - timedelta(seconds=min(after.pending, after.processing)),
    )
    sent = _send(
        [task.id for task in stale],
        enqueue,
        record=lambda ids: crud.touch_enqueued(session=session, task_ids=ids),
        what="stale task(s)",
        reason="stale",
    )
    return requeued + sent


def _hand_back_from_dead_workers(session: Session, enqueue: Callable[[int], None], now: datetime) -> list[int]:
    handed_back = _send(
        [task.id for task in crud.tasks_of_dead_workers(session=session, now=now)],
        enqueue,
        record=lambda ids: crud.hand_back(session=session, task_ids=ids),
        what="task(s) of dead workers",
        reason="dead_worker",
    )
    crud.prune_workers(session=session, now=now)
    return handed_back


def _send(
    task_ids: list[int],
    enqueue: Callable[[int], None],
    *,
    record: Callable[[list[int]], None],
    what: str,
    reason: str,
) -> list[int]:
    """Enqueues each task, stopping at the first failure (broker down), and records (and counts,
    under ``reason``) the ones sent even then, so that the next round counts from now for them."""
    sent: list[int] = []
    try:
        for task_id in task_ids:
            enqueue(task_id)
            sent.append(task_id)
    finally:
        record(sent)
        TASKS_REQUEUED.labels(reason).inc(len(sent))
    if sent:
        log.warning("re-enqueued %d %s: %s", len(sent), what, sent[:20])
    return sent
