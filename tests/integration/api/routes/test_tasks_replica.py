"""The status routes with a real streaming replica: what it answers, and what the primary
answers instead (a task the replica lacks, an unfinished one, a replica that is down)."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app.core.replica import get_replica
from tests.fixtures.api import RecordingQueue
from tests.support import images
from tests.support.tasks import complete, upload


class Standby:
    """The replica's side of the test: replay control and what it holds."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")

    def _run(self, sql: str, **params: object):  # type: ignore[no-untyped-def]
        with self.engine.connect() as connection:
            result = connection.execute(text(sql), params)
            return result.scalar() if result.returns_rows else None

    def pause(self) -> None:
        self._run("SELECT pg_wal_replay_pause()")

    def resume(self) -> None:
        self._run("SELECT pg_wal_replay_resume()")

    def status_of(self, task_id: int) -> str | None:
        return self._run("SELECT CAST(status AS text) FROM tasks WHERE id = :i", i=task_id)

    def wait_for_status(self, task_id: int, status: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.status_of(task_id) != status:
            assert time.monotonic() < deadline, f"task {task_id} never {status} on the replica"
            time.sleep(0.02)


@pytest.fixture
def standby(configure, pg_database, postgres_replica, tmp_path, monkeypatch) -> Iterator[Standby]:
    from app.api.routes import tasks
    from app.tasks.schema import upgrade

    replica_url = postgres_replica.wait_for_database(pg_database.rsplit("/", 1)[1])
    configure(
        DATA_DIR=tmp_path / "data",
        DATABASE_URL=pg_database,
        DATABASE_REPLICA_URL=replica_url,
        # The lag bound is not what these tests are about (tests/integration/core/test_replica.py): the
        # replica stays in use even while paused, so only the answer checks protect the client.
        DATABASE_REPLICA_MAX_LAG_SECONDS=3600,
        DATABASE_REPLICA_CHECK_SECONDS=0.05,
        WEBHOOK_SECRET=secrets.token_urlsafe(32),
        COOKIE_SECURE="false",
    )
    upgrade()
    monkeypatch.setattr(tasks, "enqueue_processing", RecordingQueue(pg_database))
    standby = Standby(replica_url)
    deadline = time.monotonic() + 10
    while not standby._run("SELECT to_regclass('tasks') IS NOT NULL"):  # the schema has replicated
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield standby
    with contextlib.suppress(OperationalError):  # unless a test stopped it
        standby.resume()
    standby.engine.dispose()


@pytest.fixture
def api(standby) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app(), base_url="http://testserver") as client:
        yield client


def answers() -> dict[str, int]:
    replica = get_replica()
    assert replica is not None
    return dict(replica.answers)


STATUS_PATHS = ["/api/isReady/{id}", "/api/tasks/{id}"]


@pytest.mark.parametrize("path", STATUS_PATHS)
def test_a_finished_task_is_answered_by_the_replica_an_unfinished_one_by_the_primary(api, standby, path):
    task_id = upload(api, images.jpeg()).json()["task_id"]
    standby.wait_for_status(task_id, "pending")
    before = answers()
    assert api.get(path.format(id=task_id)).json()["status"] == "pending"
    after = answers()
    # the user from the replica; the task too, but unfinished, so read again from the primary
    assert after["replica"] - before["replica"] == 1 and after["primary"] - before["primary"] == 1

    complete(api, task_id)
    standby.wait_for_status(task_id, "completed")
    before = answers()
    assert api.get(path.format(id=task_id)).json()["status"] == "completed"
    after = answers()
    # the task from the replica; the user is known since the first look-up (app.api.deps.KnownUsers)
    assert after["replica"] - before["replica"] == 1 and after["primary"] == before["primary"]


@pytest.mark.parametrize("path", STATUS_PATHS)
def test_a_deleted_task_is_gone_even_while_the_replica_still_holds_it(api, standby, path):
    task_id = upload(api, images.jpeg()).json()["task_id"]
    complete(api, task_id)
    standby.wait_for_status(task_id, "completed")
    standby.pause()
    assert api.delete(f"/api/tasks/{task_id}").status_code == 204
    assert standby.status_of(task_id) == "completed"  # the replica has not replayed the delete
    response = api.get(path.format(id=task_id))
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "Task not found."}


def test_a_task_created_while_the_replica_is_paused_is_found_by_every_status_route(api, standby):
    api.get("/api/tasks")  # the user exists before the pause
    standby.pause()
    task_id = upload(api, images.jpeg()).json()["task_id"]
    assert standby.status_of(task_id) is None  # the replica has not seen it
    assert api.get(f"/api/isReady/{task_id}").json()["status"] == "pending"
    assert api.get(f"/api/tasks/{task_id}").json()["status"] == "pending"
    listed = api.get("/api/tasks").json()
    assert [item["id"] for item in listed["items"]] == [task_id] and listed["total"] == 1


def test_a_status_never_goes_back_when_the_replica_holds_an_older_state(api, standby):
    task_id = upload(api, images.jpeg()).json()["task_id"]
    standby.wait_for_status(task_id, "pending")
    standby.pause()
    complete(api, task_id)
    assert standby.status_of(task_id) == "pending"  # stale on the replica
    for _ in range(5):
        assert api.get(f"/api/isReady/{task_id}").json()["status"] == "completed"
        assert api.get(f"/api/tasks/{task_id}").json()["status"] == "completed"
        assert api.get("/api/tasks").json()["items"][0]["status"] == "completed"
        assert api.get(f"/api/tasks/{task_id}", params={"wait": 1}).json()["status"] == "completed"


def test_a_list_of_finished_tasks_comes_from_the_replica_until_the_user_has_a_new_one(api, standby):
    done = upload(api, images.jpeg()).json()["task_id"]
    complete(api, done)
    standby.wait_for_status(done, "completed")
    before = answers()
    assert [t["status"] for t in api.get("/api/tasks").json()["items"]] == ["completed"]
    assert answers()["replica"] - before["replica"] == 2  # the user and the page

    standby.pause()
    new = upload(api, images.jpeg()).json()["task_id"]
    listed = api.get("/api/tasks").json()
    assert [(t["id"], t["status"]) for t in listed["items"]] == [(new, "pending"), (done, "completed")]
    assert listed["total"] == 2
    api.delete(f"/api/tasks/{new}")
    listed = api.get("/api/tasks").json()  # the replica still has nothing newer, but the primary one fewer
    assert [t["id"] for t in listed["items"]] == [done] and listed["total"] == 1


def test_the_status_routes_keep_answering_with_the_replica_stopped(api, standby, postgres_replica):
    task_id = upload(api, images.jpeg()).json()["task_id"]
    complete(api, task_id)
    standby.wait_for_status(task_id, "completed")
    assert api.get(f"/api/isReady/{task_id}").json()["status"] == "completed"
    standby.engine.dispose()
    postgres_replica.stop_immediately()
    started = time.monotonic()
    for _ in range(20):
        for path in ("/api/isReady/{id}", "/api/tasks/{id}", "/api/tasks"):
            response = api.get(path.format(id=task_id))
            assert response.status_code == 200, response.text
    seconds = time.monotonic() - started
    assert api.get("/readyz").json()["checks"]["database"] == "ok"
    assert seconds < 10
    print(f"\n60 status reads with the replica stopped: {seconds:.2f} s")
