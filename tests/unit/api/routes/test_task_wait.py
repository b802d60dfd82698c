"""Long polls on the status endpoints: `?wait=N` answers as soon as the task is terminal."""

from __future__ import annotations

import threading
import time

import pytest

from app.api import outcome_waiters
from app.core.db import get_engine, session_scope
from app.tasks import crud
from app.tasks.records import TaskStatus
from tests.support import images
from tests.support.signing import report_outcome
from tests.support.tasks import upload

STATUS_PATHS = ["/api/isReady/{id}", "/api/tasks/{id}"]
FAILED = {"status": "failed", "error": "the image is damaged"}


def in_background(call):  # type: ignore[no-untyped-def]
    """Runs ``call`` in a thread; returns a function giving (result, seconds it took)."""
    outcome: dict = {}

    def run() -> None:
        started = time.monotonic()
        outcome["result"] = call()
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()

    def result(timeout: float = 30):  # type: ignore[no-untyped-def]
        thread.join(timeout)
        assert not thread.is_alive(), "the long poll did not return"
        return outcome["result"], outcome["seconds"]

    return result


def wait_until_waiting(count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while outcome_waiters.waiting_count() < count:
        assert time.monotonic() < deadline, "the request never started waiting"
        time.sleep(0.01)


@pytest.fixture
def slow_recheck(configure, embedded) -> None:
    # Only the webhook's wake-up can end these waits early.
    configure(STATUS_WAIT_RECHECK_SECONDS=30)


@pytest.mark.parametrize("path", STATUS_PATHS)
def test_a_waiting_request_returns_when_the_webhook_applies_the_outcome(slow_recheck, client, path):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    result = in_background(lambda: client.get(path.format(id=task_id), params={"wait": 30}))
    wait_until_waiting(1)
    assert report_outcome(client, {"task_id": task_id, **FAILED}).status_code == 200
    response, seconds = result()
    assert response.status_code == 200
    assert response.json()["status"] == "failed" and response.json()["error"] == FAILED["error"]
    assert seconds < 15  # long before the wait (30 s) or the re-check (30 s) would have ended it


def test_an_outcome_applied_elsewhere_is_seen_by_the_recheck(configure, embedded, client):
    # Another replica applied it: no wake-up here, only the bounded re-read of the row.
    configure(STATUS_WAIT_RECHECK_SECONDS=0.2)
    task_id = upload(client, images.jpeg()).json()["task_id"]
    result = in_background(lambda: client.get(f"/api/isReady/{task_id}", params={"wait": 30}))
    wait_until_waiting(1)
    with session_scope() as session:
        assert crud.finish_task(
            session=session, task_id=task_id, status=TaskStatus.FAILED, result_key=None, result_metadata=None, error="x"
        )
    response, seconds = result()
    assert response.json()["status"] == "failed"
    assert seconds < 15


def test_the_wait_ends_with_the_current_state_when_time_is_up(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    started = time.monotonic()
    response = client.get(f"/api/isReady/{task_id}", params={"wait": 0.5})
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 200
    assert set(response.json()) == {"id", "status", "result_path", "metadata", "error"}
    assert response.json()["status"] == "pending"


@pytest.mark.parametrize("path", STATUS_PATHS)
def test_a_finished_task_is_answered_at_once(slow_recheck, client, path):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    report_outcome(client, {"task_id": task_id, **FAILED})
    result = in_background(lambda: client.get(path.format(id=task_id), params={"wait": 30}))
    response, seconds = result()
    assert response.json()["status"] == "failed" and seconds < 15
    assert outcome_waiters.waiting_count() == 0


@pytest.mark.parametrize("wait", ["-1", "30.5", "600", "soon", "nan", "inf"])
def test_the_wait_is_bounded(client, wait):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    response = client.get(f"/api/tasks/{task_id}", params={"wait": wait})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "wait"]


def test_another_users_task_is_404_without_waiting(slow_recheck, make_client):
    alice, bob = make_client(), make_client()
    task_id = upload(alice, images.jpeg()).json()["task_id"]
    result = in_background(lambda: bob.get(f"/api/isReady/{task_id}", params={"wait": 30}))
    response, seconds = result()
    assert response.status_code == 404 and response.json() == {"detail": "Task not found."}
    assert seconds < 15


def test_a_task_deleted_while_waited_on_is_404(configure, embedded, client):
    configure(STATUS_WAIT_RECHECK_SECONDS=0.2)
    task_id = upload(client, images.jpeg()).json()["task_id"]
    result = in_background(lambda: client.get(f"/api/tasks/{task_id}", params={"wait": 30}))
    wait_until_waiting(1)
    assert client.delete(f"/api/tasks/{task_id}").status_code == 204
    response, _ = result()
    assert response.status_code == 404


def test_waiting_requests_hold_no_database_connection(slow_recheck, client):
    waiters = 25  # more than the pool holds (5 + 10 overflow for SQLite)
    ids = [upload(client, images.jpeg(64, 48)).json()["task_id"] for _ in range(waiters)]
    results = [in_background(lambda i=i: client.get(f"/api/isReady/{i}", params={"wait": 30})) for i in ids]
    wait_until_waiting(waiters)
    deadline = time.monotonic() + 10
    while get_engine().pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert get_engine().pool.checkedout() == 0
    assert client.get("/api/tasks", params={"limit": 1}).status_code == 200  # the pool is free for others
    for task_id in ids:
        report_outcome(client, {"task_id": task_id, **FAILED})
    assert {result()[0].json()["status"] for result in results} == {"failed"}
