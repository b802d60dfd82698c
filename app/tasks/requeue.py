"""Re-enqueues tasks whose message may have been lost (broker restart without
persistence, a crash between commit and enqueue, a worker's broker connection broken while
it held a message it had not started: Celery drops those, and Redis gives them out again only
after the visibility timeout).

A pending task is one no worker has claimed, and a worker claims a message the moment it
receives it, so a pending task whose message went out a minute ago with an empty queue has
lost it; a processing one may still be running, and waits the longer time.

Only while nothing waits in the queue: during a backlog an old pending task most likely
still has its message, and re-sending every such task each round would snowball the
queue with duplicates. A lost message is found once the backlog drains. Processing is
idempotent, so the occasional duplicate is harmless."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from app.tasks import crud
from app.tasks.records import utcnow

log = logging.getLogger(__name__)


def requeue_stale(
    *,
    session: Session,
    enqueue: Callable[[int], None],
    waiting: Callable[[], int],
    older_than_seconds: int,
    pending_older_than_seconds: int,
) -> list[int]:
    """Returns the ids re-enqueued: processing tasks sent more than ``older_than_seconds`` ago,
    pending ones (never claimed) sent more than ``pending_older_than_seconds`` ago (or the other,
    if shorter). Stops at the first enqueue failure (broker down)."""
    if waiting() > 0:
        return []
    now = utcnow()
    requeued: list[int] = []
    try:
        for task in crud.stale_unfinished_tasks(
            session=session,
            older_than=now - timedelta(seconds=older_than_seconds),
            pending_older_than=now - timedelta(seconds=min(pending_older_than_seconds, older_than_seconds)),
        ):
            enqueue(task.id)
            requeued.append(task.id)
    finally:
        crud.touch_enqueued(session=session, task_ids=requeued)
    if requeued:
        log.warning("re-enqueued %d stale task(s): %s", len(requeued), requeued[:20])
    return requeued
