"""Helpers the tests share to make, upload and complete tasks, whatever the tier.

- `upload(client, data=None, ...)`: POST /api/newTask, the response as it is (a TestClient or
  an httpx.Client against a running stack or a release); `data` defaults to a small JPEG.
- `upload_accepted(client, data, ...)`: the same, asserting the upload was accepted; its task id.
- `complete(client, task_id, data=None)`: what the worker does on success: writes the result
  through the configured storage and reports the outcome to the webhook, signed.
- `run_worker(client, task_id)`: the worker's real run (every preset asked for) in this process.
- `make_tasks(count, age_seconds=..., status=...)`: task rows written straight to the database.

Polling helpers are in tests/support/waiting.py."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta

import httpx
from sqlalchemy import update

from app.core.db import session_scope
from app.storage import get_storage, result_key
from app.tasks import crud
from app.tasks.records import Task, TaskStatus, User, utcnow
from tests.support import images
from tests.support.signing import report_outcome

UPLOAD = "/api/newTask"
TERMINAL = ("completed", "failed")
_SMALL_JPEG: bytes | None = None


def small_jpeg() -> bytes:
    """A 640x480 JPEG, made once per process."""
    global _SMALL_JPEG
    if _SMALL_JPEG is None:
        _SMALL_JPEG = images.jpeg(640, 480)
    return _SMALL_JPEG


def upload(
    client: httpx.Client,
    data: bytes | None = None,
    name: str = "photo.jpg",
    content_type: str = "image/jpeg",
    *,
    timeout: float | None = None,
) -> httpx.Response:
    """POST /api/newTask with one file; the response, whatever it is. `timeout` overrides the
    client's own (the stacks' clients have 30 s; a TestClient takes none)."""
    file = (name, small_jpeg() if data is None else data, content_type)
    extra = {} if timeout is None else {"timeout": timeout}
    return client.post(UPLOAD, files={"file": file}, **extra)


def upload_accepted(client: httpx.Client, data: bytes, name: str = "photo.jpg") -> int:
    """An upload the service must accept: its task id."""
    response = upload(client, data, name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Task created successfully"
    return body["task_id"]


def run_worker(client: httpx.Client, task_id: int) -> None:
    """Does what the worker does, in this process: claim, make every preset the task asked
    for through the configured storage, report (signed)."""
    from worker.tasks import run_pipeline

    storage = get_storage()
    with session_scope() as session:
        claim = crud.start_processing(session=session, task_id=task_id, max_attempts=5)
    assert claim is not None
    outcome = run_pipeline(task_id, storage.read(claim.source_key), claim.presets, storage)
    assert outcome.status == "completed", outcome.error
    response = report_outcome(client, outcome.model_dump(mode="json"))
    assert response.status_code == 200, response.text


def complete(client: httpx.Client, task_id: int, data: bytes | None = None) -> None:
    """Does what the worker does on success: writes the result (an 800x600 JPEG unless `data` is
    given) through the configured storage and reports it completed, signed."""
    get_storage().write(result_key(task_id), images.jpeg(800, 600) if data is None else data, content_type="image/jpeg")
    metadata = {"original_size": 1, "processed_size": 2, "width": 800, "height": 600}
    response = report_outcome(
        client, {"task_id": task_id, "status": "completed", "result_path": "x", "metadata": metadata}
    )
    assert response.status_code == 200, response.text


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


def status_of(client: httpx.Client, task_id: int) -> dict:
    """GET /api/isReady/{id}: the legacy status shape."""
    response = client.get(f"/api/isReady/{task_id}")
    response.raise_for_status()
    return response.json()


def wait_for_status(
    client: httpx.Client, task_id: int, statuses: tuple[str, ...], *, timeout: float, interval: float = 0.05
) -> dict:
    """Polls the task's status until it is one of `statuses`; TimeoutError (with the last status) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(client, task_id)
        if status["status"] in statuses:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} not in {statuses} after {timeout}s: {status}")
        time.sleep(interval)


def wait_for_terminal(client: httpx.Client, task_id: int, *, timeout: float = 60) -> dict:
    """The task's status once it is completed or failed."""
    return wait_for_status(client, task_id, TERMINAL, timeout=timeout, interval=0.1)
