from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.core.db import session_scope
from app.tasks import crud
from app.tasks.queueing import enqueue_processing, waiting_messages
from app.tasks.records import Task, TaskStatus, WorkerBeat, utcnow
from app.tasks.requeue import RequeueAfter, requeue_stale
from tests.support.metrics import Counts
from tests.support.tasks import make_tasks

PENDING = TaskStatus.PENDING
PROCESSING = TaskStatus.PROCESSING
AFTER = RequeueAfter(processing=600, pending=60)


def requeue(*, after: RequeueAfter = AFTER, waiting: int = 0) -> list[int]:
    sent: list[int] = []
    with session_scope() as session:
        returned = requeue_stale(session=session, enqueue=sent.append, waiting=lambda: waiting, after=after)
    assert returned == sent
    return sent


def test_stale_unfinished_tasks_are_enqueued_again_once(embedded):
    stale = make_tasks(2, age_seconds=900) + make_tasks(1, age_seconds=900, status=PROCESSING)
    make_tasks(1, age_seconds=10)  # recent: still in flight
    make_tasks(1, age_seconds=900, status=TaskStatus.COMPLETED)
    assert requeue() == stale
    assert requeue() == []  # enqueued_at was refreshed: the next round leaves them alone


@pytest.mark.parametrize(
    ("status", "age_seconds", "after", "re_sent"),
    [
        # A pending task was never claimed: its message is lost after the short wait...
        (PENDING, 90, AFTER, True),
        (PENDING, 30, AFTER, False),
        # ...a processing one may still be running, and waits the long one.
        (PROCESSING, 90, AFTER, False),
        (PROCESSING, 700, AFTER, True),
        # The shorter of the two applies to pending tasks (tests and small setups lower only the long one).
        (PENDING, 30, RequeueAfter(processing=20, pending=60), True),
        (PENDING, 10, RequeueAfter(processing=20, pending=60), False),
    ],
)
def test_pending_tasks_are_re_sent_sooner_than_processing_ones(embedded, status, age_seconds, after, re_sent):
    [task_id] = make_tasks(1, age_seconds=age_seconds, status=status)
    assert requeue(after=after) == ([task_id] if re_sent else [])


def test_nothing_is_re_sent_while_a_backlog_is_waiting(embedded):
    make_tasks(3, age_seconds=900)
    assert requeue(waiting=7) == []


def claimed(worker: str, *, claimed_seconds_ago: int, lease_left_seconds: int | None) -> int:
    """A processing task held by ``worker``, whose lease ends that many seconds from now
    (negative: ran out; None: no row)."""
    [task_id] = make_tasks(1, age_seconds=claimed_seconds_ago, status=PROCESSING)
    with session_scope() as session:
        session.execute(
            update(Task)
            .where(Task.id == task_id)
            .values(claimed_by=worker, updated_at=utcnow() - timedelta(seconds=claimed_seconds_ago))
        )
        session.commit()
        if lease_left_seconds is not None:
            crud.record_beat(
                session=session, worker=worker, alive_until=utcnow() + timedelta(seconds=lease_left_seconds)
            )
    return task_id


@pytest.mark.parametrize(
    ("claimed_seconds_ago", "lease_left_seconds", "re_sent"),
    [
        (40, -1, True),  # the lease ran out: the worker is dead, its task handed back at once
        (40, 25, False),  # renewed: the run goes on, however long
        (900, 25, False),  # a live worker's old claim: not this rule's (the age rule, 3600 s here, has it)
        (40, None, False),  # no row: stopped cleanly (its runs finished) or never beat: the age rule
    ],
)
def test_tasks_of_dead_workers_are_handed_back(embedded, claimed_seconds_ago, lease_left_seconds, re_sent):
    task_id = claimed("celery@pod/1", claimed_seconds_ago=claimed_seconds_ago, lease_left_seconds=lease_left_seconds)
    sent = requeue(after=RequeueAfter(processing=3600, pending=60))
    assert sent == ([task_id] if re_sent else [])
    with session_scope() as session:
        task = session.get(Task, task_id)
        assert (task.status, task.claimed_by) == ((PENDING, None) if re_sent else (PROCESSING, "celery@pod/1"))


def test_a_dead_workers_task_is_handed_back_once_even_during_a_backlog(embedded):
    # Its message is in Redis's unacknowledged set, not in the queue: the backlog is no reason to wait.
    task_id = claimed("celery@pod/1", claimed_seconds_ago=60, lease_left_seconds=-15)
    assert requeue(waiting=50) == [task_id]
    assert requeue(waiting=50) == []  # pending now, held by nobody
    with session_scope() as session:  # the dead worker's row went with its last task
        assert session.get(WorkerBeat, "celery@pod/1") is None


def test_a_task_whose_report_lands_while_it_is_handed_back_stays_finished(embedded):
    task_id = claimed("celery@pod/1", claimed_seconds_ago=60, lease_left_seconds=-15)

    def report_lands(sent_id: int) -> None:  # the worker was alive after all
        with session_scope() as other:
            finished = crud.finish_task(
                session=other,
                task_id=sent_id,
                status=TaskStatus.COMPLETED,
                result_key="results/1.jpg",
                result_metadata="{}",
                error=None,
            )
            assert finished

    with session_scope() as session:
        requeue_stale(session=session, enqueue=report_lands, waiting=lambda: 0, after=AFTER)
    with session_scope() as session:
        assert session.get(Task, task_id).status is TaskStatus.COMPLETED  # terminal: never left


def test_beats_update_one_row_per_worker_and_a_clean_stop_removes_it(embedded):
    with session_scope() as session:
        for worker in ("a", "a", "b"):
            crud.record_beat(session=session, worker=worker, alive_until=utcnow())
        assert sorted(session.scalars(WorkerBeat.__table__.select().with_only_columns(WorkerBeat.name))) == ["a", "b"]
        crud.forget_worker(session=session, worker="a")
        assert session.get(WorkerBeat, "a") is None and session.get(WorkerBeat, "b") is not None


def test_waiting_messages_counts_the_real_queue(embedded):
    assert waiting_messages() == 0
    for task_id in (1, 2, 3):
        enqueue_processing(task_id)
    assert waiting_messages() == 3


def test_re_sends_are_counted_by_rule(embedded):
    counts = Counts(
        ("imgproc_tasks_requeued_total", {"reason": "dead_worker"}),
        ("imgproc_tasks_requeued_total", {"reason": "stale"}),
    )
    claimed("celery@pod/1", claimed_seconds_ago=60, lease_left_seconds=-15)
    make_tasks(2, age_seconds=900)
    assert len(requeue()) == 3
    assert list(counts.changes().values()) == [1, 2]
