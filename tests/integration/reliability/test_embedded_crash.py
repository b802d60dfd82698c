"""`imgproc run` (embedded mode: SQLite database and broker) killed and restarted, as real
processes: SIGKILL of the whole command, SIGKILL of `imgproc run` alone, and SIGTERM. Every
accepted task completes, none runs twice, and the worker never outlives the command."""

from __future__ import annotations

import os
import signal
import time

from tests.fixtures.ledger import ledger, upload_many
from tests.fixtures.processes import child_pids, is_alive
from tests.fixtures.services import ServiceStack
from tests.support.tasks import TERMINAL, status_of
from tests.support.waiting import true_within, wait_until

TASKS = 15
DELAY = 2.0  # seconds per image: two are in flight at any moment (concurrency 2)
RECOVERY_BOUND = 60  # the target: every stranded task completed within a minute of the restart


def worker_of(stack: ServiceStack) -> int:
    """The pid of the worker `imgproc run` started (its only child)."""
    return wait_until(lambda: child_pids(stack.api.pid), timeout=30, what="the embedded worker")[0]


def processing(client, ids: list[int], count: int) -> list[int]:  # type: ignore[no-untyped-def]
    busy = [i for i in ids if status_of(client, i)["status"] == "processing"]
    return busy if len(busy) >= count else []


def test_kill_9_of_imgproc_run_and_restart_completes_every_task_once_within_a_minute(embedded_fault_stack):
    """The kill -9 of the issue: the stranded tasks (delivered to the killed worker, not
    acknowledged) are re-delivered as soon as the restarted worker polls, not after the
    reconciler's 600 s; the ones waiting in the queue simply run. Each task runs to completion
    once: the two in flight were started twice (attempts 2), every other task once."""
    with embedded_fault_stack(delay=DELAY, WORKER_CONCURRENCY=2) as stack, stack.client() as client:
        stack.start_embedded()
        worker = worker_of(stack)
        pool = child_pids(worker)
        ids = upload_many(client, TASKS)
        in_flight = wait_until(lambda: processing(client, ids, 2), timeout=30, what="two tasks processing")
        os.killpg(stack.api.pid, signal.SIGKILL)  # the whole `imgproc run` process group
        stack.api.wait(timeout=10)
        # The worker has its own session: only its parent-death signal can have stopped it.
        assert true_within(lambda: not any(is_alive(p) for p in [worker, *pool]), timeout=5), "worker orphaned"

        restarted = time.monotonic()
        stack.start_embedded()
        for task_id in in_flight:  # the stranded ones: delivered to the killed worker, unacknowledged
            wait_until(lambda i=task_id: status_of(client, i)["status"] in TERMINAL, timeout=RECOVERY_BOUND)
        recovered = round(time.monotonic() - restarted, 1)
        counts = ledger(
            stack,
            client,
            ids,
            name="embedded: imgproc run kill -9, restart",
            faults=1,
            timeout=RECOVERY_BOUND,
            started=restarted,
            recovery_seconds=recovered,
        )
        runs = stack.task_attempts(ids)
        print(f"stranded tasks completed {recovered} s, all {counts['seconds']} s after the restart; attempts {runs}")
        assert counts["completed"] == TASKS
        assert counts["seconds"] <= RECOVERY_BOUND
        assert {i: runs[i] for i in in_flight} == dict.fromkeys(in_flight, 2), runs
        assert all(runs[i] == 1 for i in ids if i not in in_flight), runs


def test_the_worker_dies_with_imgproc_run_and_a_restart_runs_one_worker(embedded_fault_stack):
    """SIGKILL to `imgproc run` alone (not its group): its worker, in a session of its own, used
    to live on as an orphan and a restart added a second one."""
    with embedded_fault_stack(WORKER_CONCURRENCY=1) as stack:
        stack.start_embedded()
        worker = worker_of(stack)
        pool = child_pids(worker)
        stack.api.send_signal(signal.SIGKILL)
        stack.api.wait(timeout=10)
        killed = time.monotonic()
        assert true_within(lambda: not any(is_alive(p) for p in [worker, *pool]), timeout=5), "worker orphaned"
        print(f"worker gone {time.monotonic() - killed:.2f} s after imgproc run was killed")

        stack.start_embedded()
        assert len(child_pids(stack.api.pid)) == 1
        with stack.client() as client:
            ids = upload_many(client, 2)
            ledger(stack, client, ids, name="imgproc run SIGKILL alone + restart", faults=1, timeout=60)


def test_a_second_imgproc_run_on_the_same_data_directory_is_refused(embedded_fault_stack):
    with embedded_fault_stack() as stack:
        stack.start_embedded()
        first = stack.api
        stack.start_embedded(wait=False)
        assert stack.api.wait(timeout=30) == 1
        assert "another `imgproc run`" in stack.logs("run")
        assert first.poll() is None
        stack.api = first


def test_sigterm_stops_imgproc_run_in_bounded_time_and_the_running_task_completes(embedded_fault_stack):
    """SIGTERM while a task runs longer than the worker's shutdown grace: `imgproc run` exits
    within uvicorn's shutdown + the grace, the task is handed back (its worker is killed, its
    lease freed) and completes once, after the restart."""
    with embedded_fault_stack(delay=25, WORKER_CONCURRENCY=1) as stack:
        stack.start_embedded()
        with stack.client() as client:
            ids = upload_many(client, 2)
            wait_until(lambda: processing(client, ids, 1), timeout=30, what="a task processing")
            started = time.monotonic()
            stack.api.send_signal(signal.SIGTERM)
            stack.api.wait(timeout=60)
            stopped = time.monotonic() - started
            print(f"imgproc run stopped {stopped:.1f} s after SIGTERM")
            assert stopped < 20
            stack.env["IMGPROC_TEST_PIPELINE_DELAY"] = "0.5"
            stack.start_embedded()
            counts = ledger(stack, client, ids, name="imgproc run SIGTERM mid-task + restart", faults=1, timeout=60)
        assert counts["completed"] == 2
        assert sorted(stack.task_attempts(ids).values()) == [1, 2]  # the interrupted one ran again, once
