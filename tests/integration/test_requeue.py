"""Re-enqueueing on PostgreSQL: replicas doing it at once skip each other's locked rows."""

from __future__ import annotations

from datetime import timedelta

from app.core.db import session_scope
from app.tasks import crud
from app.tasks.records import utcnow
from app.tasks.requeue import RequeueAfter, requeue_stale
from tests.support.tasks import make_tasks

AFTER = RequeueAfter(processing=600, pending=60)


def test_two_replicas_re_enqueueing_at_once_send_each_stale_task_once(configure, pg_database, tmp_path):
    # Every API replica runs the reconciler; on PostgreSQL the rows one holds are skipped by the other.
    configure(DATA_DIR=tmp_path / "data", DATABASE_URL=pg_database)
    from app.tasks.schema import upgrade

    upgrade()
    stale = make_tasks(4, age_seconds=900)
    first_replica: list[int] = []
    second_replica: list[int] = []
    with session_scope() as first:
        # The first replica has selected (and locked) the stale rows but not yet recorded its sends...
        cutoff = utcnow() - timedelta(seconds=600)
        held = crud.stale_unfinished_tasks(session=first, older_than=cutoff, pending_older_than=cutoff)
        assert [task.id for task in held] == stale
        # ...when the second one runs a whole round.
        with session_scope() as second:
            requeue_stale(
                session=second,
                enqueue=second_replica.append,
                waiting=lambda: 0,
                after=AFTER,
            )
        first_replica.extend(task.id for task in held)
        crud.touch_enqueued(session=first, task_ids=first_replica)
    with session_scope() as later:  # and after the first committed, the tasks are fresh again
        requeue_stale(
            session=later,
            enqueue=second_replica.append,
            waiting=lambda: 0,
            after=AFTER,
        )
    assert first_replica == stale
    assert second_replica == []
