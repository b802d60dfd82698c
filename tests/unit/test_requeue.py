from __future__ import annotations

from functools import partial

import pytest

from app.core.db import session_scope
from app.tasks.queueing import enqueue_processing, waiting_messages
from app.tasks.records import TaskStatus
from app.tasks.requeue import requeue_stale
from tests.support.tasks import make_tasks

PENDING = TaskStatus.PENDING
PROCESSING = TaskStatus.PROCESSING


def test_stale_unfinished_tasks_are_enqueued_again_once(embedded):
    stale = make_tasks(2, age_seconds=900) + make_tasks(1, age_seconds=900, status=PROCESSING)
    make_tasks(1, age_seconds=10)  # recent: still in flight
    make_tasks(1, age_seconds=900, status=TaskStatus.COMPLETED)
    sent: list[int] = []
    requeue = partial(requeue_stale, enqueue=sent.append, waiting=lambda: 0, older_than_seconds=600)
    with session_scope() as session:
        assert requeue(session=session, pending_older_than_seconds=60) == stale
        # enqueued_at was refreshed: the next round leaves them alone
        assert requeue(session=session, pending_older_than_seconds=60) == []
    assert sent == stale


@pytest.mark.parametrize(
    ("status", "age_seconds", "older_than_seconds", "pending_older_than_seconds", "re_sent"),
    [
        # A pending task was never claimed: its message is lost after the short wait...
        (PENDING, 90, 600, 60, True),
        (PENDING, 30, 600, 60, False),
        # ...a processing one may still be running, and waits the long one.
        (PROCESSING, 90, 600, 60, False),
        (PROCESSING, 700, 600, 60, True),
        # The shorter of the two applies to pending tasks (tests and small setups lower only the long one).
        (PENDING, 30, 20, 60, True),
        (PENDING, 10, 20, 60, False),
    ],
)
def test_pending_tasks_are_re_sent_sooner_than_processing_ones(
    embedded, status, age_seconds, older_than_seconds, pending_older_than_seconds, re_sent
):
    [task_id] = make_tasks(1, age_seconds=age_seconds, status=status)
    sent: list[int] = []
    with session_scope() as session:
        requeue_stale(
            session=session,
            enqueue=sent.append,
            waiting=lambda: 0,
            older_than_seconds=older_than_seconds,
            pending_older_than_seconds=pending_older_than_seconds,
        )
    assert sent == ([task_id] if re_sent else [])


def test_nothing_is_re_sent_while_a_backlog_is_waiting(embedded):
    make_tasks(3, age_seconds=900)
    sent: list[int] = []
    with session_scope() as session:
        assert (
            requeue_stale(
                session=session,
                enqueue=sent.append,
                waiting=lambda: 7,
                older_than_seconds=600,
                pending_older_than_seconds=60,
            )
            == []
        )
    assert sent == []


def test_waiting_messages_counts_the_real_queue(embedded):
    assert waiting_messages() == 0
    for task_id in (1, 2, 3):
        enqueue_processing(task_id)
    assert waiting_messages() == 3
