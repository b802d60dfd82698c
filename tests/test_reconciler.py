from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import update

from app.core.db import session_scope
from app.tasks import crud
from app.tasks.queueing import enqueue_processing, waiting_messages
from app.tasks.records import Task, TaskStatus, User, utcnow
from app.tasks.requeue import requeue_stale


def make_tasks(count: int, *, age_seconds: int, status: TaskStatus = TaskStatus.PENDING) -> list[int]:
    with session_scope() as session:
        user = User(token_hash=secrets.token_hex(32))
        session.add(user)
        session.commit()
        ids = []
        for _ in range(count):
            task = crud.create_task(
                session=session, owner=user, filename="", source_key="originals/x", source_format="PNG", size=1
            )
            ids.append(task.id)
        session.execute(
            update(Task)
            .where(Task.id.in_(ids))
            .values(status=status, enqueued_at=utcnow() - timedelta(seconds=age_seconds))
        )
        session.commit()
    return ids


def test_stale_unfinished_tasks_are_enqueued_again_once(embedded):
    stale = make_tasks(2, age_seconds=900) + make_tasks(1, age_seconds=900, status=TaskStatus.PROCESSING)
    make_tasks(1, age_seconds=10)  # recent: still in flight
    make_tasks(1, age_seconds=900, status=TaskStatus.COMPLETED)
    sent: list[int] = []
    with session_scope() as session:
        assert requeue_stale(session=session, enqueue=sent.append, waiting=lambda: 0, older_than_seconds=600) == stale
        # enqueued_at was refreshed: the next round leaves them alone
        assert requeue_stale(session=session, enqueue=sent.append, waiting=lambda: 0, older_than_seconds=600) == []
    assert sent == stale


def test_nothing_is_re_sent_while_a_backlog_is_waiting(embedded):
    make_tasks(3, age_seconds=900)
    sent: list[int] = []
    with session_scope() as session:
        assert requeue_stale(session=session, enqueue=sent.append, waiting=lambda: 7, older_than_seconds=600) == []
    assert sent == []


def test_waiting_messages_counts_the_real_queue(embedded):
    assert waiting_messages() == 0
    for task_id in (1, 2, 3):
        enqueue_processing(task_id)
    assert waiting_messages() == 3


def test_two_replicas_reconciling_at_once_send_each_stale_task_once(configure, pg_database, tmp_path):
    # Every API replica runs the reconciler; on PostgreSQL the rows one holds are skipped by the other.
    configure(DATA_DIR=tmp_path / "data", DATABASE_URL=pg_database)
    from app.core.schema import upgrade

    upgrade()
    stale = make_tasks(4, age_seconds=900)
    first_replica: list[int] = []
    second_replica: list[int] = []
    with session_scope() as first:
        # The first replica has selected (and locked) the stale rows but not yet recorded its sends...
        held = crud.stale_unfinished_tasks(session=first, older_than=utcnow() - timedelta(seconds=600))
        assert [task.id for task in held] == stale
        # ...when the second one runs a whole round.
        with session_scope() as second:
            requeue_stale(session=second, enqueue=second_replica.append, waiting=lambda: 0, older_than_seconds=600)
        first_replica.extend(task.id for task in held)
        crud.touch_enqueued(session=first, task_ids=first_replica)
    with session_scope() as later:  # and after the first committed, the tasks are fresh again
        requeue_stale(session=later, enqueue=second_replica.append, waiting=lambda: 0, older_than_seconds=600)
    assert first_replica == stale
    assert second_replica == []
