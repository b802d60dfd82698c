"""Re-enqueues tasks whose message may have been lost (broker restart without
persistence, a crash between commit and enqueue).

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
) -> list[int]:
    """Returns the ids re-enqueued. Stops at the first enqueue failure (broker down)."""
    if waiting() > 0:
        return []
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    requeued: list[int] = []
    try:
        for task in crud.stale_unfinished_tasks(session=session, older_than=cutoff):
            enqueue(task.id)
            requeued.append(task.id)
    finally:
        crud.touch_enqueued(session=session, task_ids=requeued)
    if requeued:
        log.warning("re-enqueued %d stale task(s): %s", len(requeued), requeued[:20])
    return requeued
