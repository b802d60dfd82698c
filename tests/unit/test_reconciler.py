from __future__ import annotations

from app.core.db import session_scope
from app.tasks.queueing import enqueue_processing, waiting_messages
from app.tasks.records import TaskStatus
from app.tasks.requeue import requeue_stale
from tests.support.tasks import make_tasks


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
