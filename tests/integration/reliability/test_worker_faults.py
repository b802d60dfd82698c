"""Workers dying or stopping under real processes (PostgreSQL + Redis): a pool child
SIGKILLed, a pod-style SIGTERM, and the whole worker SIGKILLed. Each test ends with the
ledger: accepted = completed + failed, nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import time

from tests.fixtures.ledger import full_log, ledger, upload_many
from tests.fixtures.processes import child_pids, is_alive
from tests.support.tasks import status_of, wait_for_status
from tests.support.waiting import wait_until


def test_a_pool_child_killed_mid_task_is_redelivered_and_completes(fault_stack):
    """task_acks_late + task_reject_on_worker_lost: the message of a task whose process dies
    is requeued, not acknowledged; the worker replaces its child and runs the task again."""
    started = time.monotonic()
    with fault_stack(workers=1, delay=1.5, WORKER_CONCURRENCY=1) as stack, stack.client() as client:
        worker = stack.workers[0]
        ids = upload_many(client, 2)
        wait_for_status(client, ids[0], ("processing",), timeout=30)
        children = child_pids(worker.pid)
        assert len(children) == 1, children  # concurrency 1: the child running ids[0]
        os.kill(children[0], signal.SIGKILL)

        counts = ledger(stack, client, ids, name="worker child SIGKILL", faults=1, timeout=60, started=started)
        assert counts["completed"] == 2
        assert worker.poll() is None, "the worker's main process must survive its child"
        assert stack.task_attempts(ids) == {ids[0]: 2, ids[1]: 1}
        assert "WorkerLostError" in full_log(stack, "worker0")


def test_sigterm_to_the_worker_lets_running_tasks_finish_and_a_new_worker_takes_the_rest(fault_stack):
    """A kubelet stopping a pod: SIGTERM to the main process only. Celery's warm shutdown
    stops consuming, lets the running tasks finish and report, and exits 0; messages it had not
    started stay in the queue for the next worker. Nothing runs twice."""
    started = time.monotonic()
    with fault_stack(workers=1, delay=2, WORKER_CONCURRENCY=2) as stack, stack.client() as client:
        first = stack.workers[0]
        ids = upload_many(client, 4)

        def running() -> list[int]:
            busy = [i for i in ids if status_of(client, i)["status"] == "processing"]
            return busy if len(busy) == 2 else []

        in_flight = wait_until(running, timeout=30, what="two tasks processing")
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        assert first.returncode == 0, stack.logs("worker0")
        # Warm shutdown: what was running when the signal came finished before the exit.
        assert [status_of(client, i)["status"] for i in in_flight] == ["completed", "completed"]
        assert any(status_of(client, i)["status"] == "pending" for i in ids), "nothing left for worker 2"

        stack.start_worker()
        counts = ledger(
            stack, client, ids, name="worker SIGTERM (warm shutdown)", faults=1, timeout=60, started=started
        )
        assert counts["completed"] == 4
        assert set(stack.task_attempts(ids).values()) == {1}, "a task ran twice"


def test_a_worker_killed_with_its_children_is_recovered_after_the_visibility_timeout(fault_stack):
    """SIGKILL to the whole process group (node loss, OOM of the pod): nobody rejects the
    message; it stays in Redis's `unacked` hash until it is older than the visibility timeout,
    and another worker's restore sweep puts it back. Production waits VISIBILITY_TIMEOUT=3600 s
    (+ a sweep every 10 x 10 s); here 8 s with a 1 s sweep. The reconciler is out of the
    picture (RECONCILE_AFTER_SECONDS stays 600)."""
    settings = {
        "WORKER_CONCURRENCY": 1,
        "VISIBILITY_TIMEOUT": 8,
        "TASK_TIME_LIMIT": 6,
        "TASK_SOFT_TIME_LIMIT": 5,
        "UNACKED_RESTORE_INTERVAL": 1,
        "UNACKED_RESTORE_THROTTLE": 1,
    }
    api_log, _ = kill_whole_worker_and_recover(fault_stack, "whole worker SIGKILL (visibility 8 s)", settings)
    assert "re-enqueued" not in api_log  # the visibility restore did it, not the reconciler


def test_a_worker_killed_with_its_children_is_recovered_from_its_heartbeat_in_seconds(fault_stack):
    """The same SIGKILL with the production visibility timeout (3600 s) and requeue age (600 s):
    the killed worker's heartbeat row goes silent, and the API hands its task back after
    WORKER_DEAD_AFTER_SECONDS (10 here; 30 by default) to a new worker. Nothing runs twice at
    once: the task ran once on each worker."""
    settings = {"WORKER_CONCURRENCY": 1, "WORKER_DEAD_AFTER_SECONDS": 10, "RECONCILE_INTERVAL_SECONDS": 1}
    api_log, recovered = kill_whole_worker_and_recover(fault_stack, "whole worker SIGKILL (heartbeat, 10 s)", settings)
    assert "task(s) of dead workers" in api_log
    assert recovered < 25  # 10 s of silence, a 1 s round, the 1.5 s run, a new worker's start


def kill_whole_worker_and_recover(fault_stack, name: str, settings: dict) -> tuple[str, float]:
    """Two uploads to one worker (a 1.5 s run each); once the first is processing, SIGKILL to the
    worker's whole process group, then a new worker. Both tasks complete, the killed one on its
    second run. Returns the API's log and the seconds from the kill to the last completion."""
    started = time.monotonic()
    with fault_stack(workers=1, delay=1.5, **settings) as stack, stack.client() as client:
        first = stack.workers[0]
        ids = upload_many(client, 2)
        wait_for_status(client, ids[0], ("processing",), timeout=30)
        children = child_pids(first.pid)
        os.killpg(first.pid, signal.SIGKILL)  # start_new_session: the group is the worker and its pool
        first.wait(timeout=10)
        wait_until(lambda: not any(is_alive(pid) for pid in children), timeout=10, what="pool children gone")
        killed = time.monotonic()

        stack.start_worker()
        counts = ledger(stack, client, ids, name=name, faults=1, timeout=60, started=started)
        recovered = time.monotonic() - killed
        print(f"task {ids[0]} of the killed worker completed {recovered:.1f}s after the kill")
        assert counts["completed"] == 2
        assert stack.task_attempts(ids)[ids[0]] == 2
        return full_log(stack, "api"), recovered


def test_a_task_killed_at_the_hard_time_limit_is_failed_at_once_not_rerun(fault_stack):
    """Code stuck in C never sees the soft limit; the hard limit kills the pool process and
    Celery acknowledges the message. The worker's main process reports the task failed with a
    reason right away, instead of leaving it `processing` for the reconciler to rerun."""
    started = time.monotonic()
    limits = {"TASK_SOFT_TIME_LIMIT": 1, "TASK_TIME_LIMIT": 3, "TEST_PIPELINE_IGNORES_SOFT_LIMIT": 1}
    with fault_stack(workers=1, delay=60, WORKER_CONCURRENCY=1, **limits) as stack, stack.client() as client:
        ids = upload_many(client, 1)
        counts = ledger(stack, client, ids, name="hard time limit kills a task", faults=1, timeout=30, started=started)
        assert counts["failed"] == 1
        assert status_of(client, ids[0])["error"] == "processing took longer than the time limit"
        assert stack.task_attempts(ids) == {ids[0]: 1}
        assert stack.workers[0].poll() is None, "the worker's main process must survive"
        assert "Hard time limit" in full_log(stack, "worker0")
