from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from app.api.deps import UPLOAD_SLOTS
from app.api.routes import tasks as tasks_routes
from app.core.config import get_settings
from app.core.db import get_engine
from app.storage import result_key
from app.storage.filesystem import FileSystemStorage
from tests.support import images
from tests.support.tasks import UPLOAD, complete, upload


def test_upload_returns_the_contract_shape_and_enqueues_once(client, queue):
    response = upload(client, images.jpeg())
    assert response.status_code == 200
    body = response.json()
    assert body == {"task_id": body["task_id"], "message": "Task created successfully"}
    assert isinstance(body["task_id"], int)
    assert queue.sent == [body["task_id"]]


def test_is_ready_has_the_legacy_shape_while_pending(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    status = client.get(f"/api/isReady/{task_id}").json()
    assert set(status) >= {"id", "status", "result_path", "metadata"}
    assert status["id"] == task_id and status["status"] == "pending" and status["result_path"] is None
    metadata = json.loads(status["metadata"])
    assert metadata["original_size"] == len(images.jpeg())
    assert metadata["processed_size"] is None
    # known from the upload check already
    assert (metadata["original_width"], metadata["original_height"], metadata["source_format"]) == (1600, 1200, "JPEG")


def test_completed_task_exposes_result_metadata_and_download(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    complete(client, task_id)

    status = client.get(f"/api/isReady/{task_id}").json()
    assert status["status"] == "completed"
    assert status["result_path"] == f"results/{task_id}.jpg"
    metadata = json.loads(status["metadata"])
    assert metadata["processed_size"] == 2 and metadata["original_size"] == len(images.jpeg())

    task = client.get(f"/api/tasks/{task_id}").json()
    assert task["result_url"] == f"/api/tasks/{task_id}/result"
    assert task["metadata"]["width"] == 800

    result = client.get(task["result_url"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "image/jpeg"
    assert images.decode(result.content).size == (800, 600)
    etag = result.headers["etag"]
    assert "private" in result.headers["cache-control"]
    assert client.get(task["result_url"], headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize("whole_max", [tasks_routes.WHOLE_RESULT_MAX_BYTES, 0], ids=["from-memory", "file"])
def test_a_result_is_the_same_answer_read_at_once_or_sent_as_a_file(client, monkeypatch, whole_max):
    jpeg = images.jpeg(800, 600)
    assert len(jpeg) <= tasks_routes.WHOLE_RESULT_MAX_BYTES  # the default bound reads it at once
    monkeypatch.setattr(tasks_routes, "WHOLE_RESULT_MAX_BYTES", whole_max)
    task_id = upload(client, images.jpeg()).json()["task_id"]
    complete(client, task_id, jpeg)
    url = f"/api/tasks/{task_id}/result"
    result = client.get(url)
    assert result.status_code == 200 and result.content == jpeg
    assert result.headers["content-length"] == str(len(jpeg))
    assert result.headers["content-type"] == "image/jpeg"
    assert result.headers["content-disposition"] == f'attachment; filename="imgproc-{task_id}.jpg"'
    assert result.headers["cache-control"] == "private, max-age=86400"
    assert client.get(url, headers={"If-None-Match": result.headers["etag"]}).status_code == 304


def test_result_of_an_unfinished_task_is_409(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    response = client.get(f"/api/tasks/{task_id}/result")
    assert response.status_code == 409
    assert "pending" in response.json()["detail"]


def test_list_is_newest_first_and_paginated(client):
    ids = [upload(client, images.jpeg(64, 48)).json()["task_id"] for _ in range(5)]
    page = client.get("/api/tasks", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [t["id"] for t in page["items"]] == [ids[3], ids[2]]


def test_delete_removes_row_and_files(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    complete(client, task_id)
    storage = FileSystemStorage(get_settings().storage_dir)
    assert storage.exists(result_key(task_id))
    originals = list((storage.root / "originals").iterdir())
    assert len(originals) == 1

    assert client.delete(f"/api/tasks/{task_id}").status_code == 204
    assert client.get(f"/api/tasks/{task_id}").status_code == 404
    assert not storage.exists(result_key(task_id))
    assert list((storage.root / "originals").iterdir()) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/isReady/{id}"),
        ("GET", "/api/tasks/{id}"),
        ("GET", "/api/tasks/{id}/result"),
        ("DELETE", "/api/tasks/{id}"),
    ],
)
def test_another_users_task_is_indistinguishable_from_a_missing_one(make_client, method, path):
    alice, bob = make_client(), make_client()
    task_id = upload(alice, images.jpeg()).json()["task_id"]
    complete(alice, task_id)

    foreign = bob.request(method, path.format(id=task_id))
    missing = bob.request(method, path.format(id=task_id + 1000))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() == {"detail": "Task not found."}
    assert alice.request("GET", f"/api/tasks/{task_id}").status_code == 200  # untouched


def test_each_user_lists_only_their_own_tasks(make_client):
    alice, bob = make_client(), make_client()
    alice_ids = {upload(alice, images.jpeg(64, 48)).json()["task_id"] for _ in range(3)}
    bob_ids = {upload(bob, images.jpeg(64, 48)).json()["task_id"]}
    assert {t["id"] for t in alice.get("/api/tasks").json()["items"]} == alice_ids
    assert {t["id"] for t in bob.get("/api/tasks").json()["items"]} == bob_ids


@pytest.mark.parametrize(
    ("data", "name", "status", "words"),
    [
        (b"", "empty.jpg", 422, "empty"),
        (b"hello, this is text", "notes.jpg", 415, "not a recognised image"),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "doc.png", 415, "pdf files are not supported"),
        (images.jpeg()[:400], "cut.jpg", 422, "truncated"),
    ],
    ids=["empty", "text", "pdf-named-png", "truncated-jpeg"],
)
def test_bad_uploads_get_a_clear_4xx_and_store_nothing(client, queue, data, name, status, words):
    response = upload(client, data, name)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"].lower()
    assert queue.sent == []
    assert client.get("/api/tasks").json()["total"] == 0
    originals = FileSystemStorage(get_settings().storage_dir).root / "originals"
    assert not originals.exists() or list(originals.iterdir()) == []


def test_a_format_outside_the_allow_list_is_named(client):
    from PIL import Image

    ico = images.encode(Image.new("RGB", (32, 32)), "ICO")
    response = upload(client, ico, "icon.png", "image/png")
    assert response.status_code == 415
    assert "ICO" in response.json()["detail"]


def test_pixel_count_over_the_limit_is_refused_before_decoding(client, queue):
    from PIL import Image

    bomb = images.encode(Image.new("1", (10000, 10000)), "PNG")  # 100 MP in a few KB
    response = upload(client, bomb, "bomb.png", "image/png")
    assert response.status_code == 422
    assert "pixels" in response.json()["detail"].lower()
    assert queue.sent == []


def test_upload_over_the_size_limit_is_413(configure, client, queue):
    limit = get_settings().MAX_UPLOAD_BYTES
    response = upload(client, b"\xff" * (limit + 1), "big.jpg")
    assert response.status_code == 413
    assert response.json() == {"detail": f"File too large: the limit is {limit} bytes."}
    assert queue.sent == []


def test_chunked_upload_over_the_limit_is_refused(client, queue):
    limit = get_settings().MAX_UPLOAD_BYTES
    sent = 0

    def body():  # no Content-Length: the server must count as it reads
        nonlocal sent
        boundary_head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        yield boundary_head
        chunk = b"\0" * (1024 * 1024)
        while sent < limit * 3:
            sent += len(chunk)
            yield chunk
        yield b"\r\n--b--\r\n"

    response = client.post(UPLOAD, content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": f"File too large: the limit is {limit} bytes."}
    assert queue.sent == []


def test_broker_outage_gives_503_with_retry_after_and_leaves_nothing(client, queue):
    queue.fail = True
    response = upload(client, images.jpeg())
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert client.get("/api/tasks").json()["total"] == 0
    assert list((FileSystemStorage(get_settings().storage_dir).root / "originals").iterdir()) == []


def test_client_file_names_never_reach_the_file_system(client):
    response = upload(client, images.jpeg(), "../../etc/passwd\x00.jpg")
    assert response.status_code == 200
    task = client.get(f"/api/tasks/{response.json()['task_id']}").json()
    assert task["filename"].startswith("../../etc/passwd")  # shown back as text only
    stored = list((FileSystemStorage(get_settings().storage_dir).root / "originals").iterdir())
    assert len(stored) == 1 and stored[0].name.isalnum()


def test_result_url_carries_the_root_path_behind_a_prefix(embedded, queue):
    from fastapi.testclient import TestClient

    from app.main import create_app

    # The server sets the root path (`imgproc api` passes IMGPROC_ROOT_PATH to uvicorn).
    with TestClient(create_app(), root_path="/imgproc") as client:
        task_id = upload(client, images.jpeg()).json()["task_id"]
        complete(client, task_id)
        assert client.get(f"/api/tasks/{task_id}").json()["result_url"] == f"/imgproc/api/tasks/{task_id}/result"


def test_every_response_carries_the_security_headers(client):
    too_big = b"\xff" * (get_settings().MAX_UPLOAD_BYTES + 1)
    cross_site = client.post(UPLOAD, files={"file": ("a.jpg", b"x")}, headers={"Origin": "https://evil.example"})
    responses = [client.get("/"), client.get("/api/tasks"), upload(client, b""), upload(client, too_big), cross_site]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_no_database_connection_is_held_while_the_body_arrives(client, queue):
    """The identity and the limits are settled, and their connection back in the pool, before
    the first byte of the body is read (issue 20: slow uploads took the whole pool)."""
    client.get("/api/tasks")  # an identity first, as a returning client has
    boundary = "xyz"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    checked_out: list[int] = []

    async def body():  # type: ignore[no-untyped-def]
        for piece in (head, images.jpeg(), tail):
            checked_out.append(get_engine().pool.checkedout())
            yield piece

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=client.cookies) as c:
            return await c.post(
                UPLOAD, content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
            )

    response = asyncio.run(post())
    assert response.status_code == 200, response.text
    assert checked_out == [0, 0, 0]
    assert queue.sent == [response.json()["task_id"]]


def test_uploads_beyond_the_slots_are_503_with_retry_after(client, configure):
    limit = get_settings().MAX_CONCURRENT_UPLOADS
    UPLOAD_SLOTS.in_flight += limit  # as if that many were in flight
    try:
        response = upload(client, images.jpeg())
    finally:
        UPLOAD_SLOTS.in_flight -= limit
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(get_settings().UPLOADS_BUSY_RETRY_AFTER_SECONDS)
    assert response.json() == {"detail": "Too many uploads in progress; retry shortly."}
    assert UPLOAD_SLOTS.in_flight == 0
    assert upload(client, images.jpeg()).status_code == 200 and UPLOAD_SLOTS.in_flight == 0


def test_one_client_cannot_take_every_slot(client):
    """A client at its own cap of uploads in flight gets 429; the process's slots stay free for
    others (one slow client used to be able to hold all of them)."""
    settings = get_settings()
    own_cap = settings.MAX_CONCURRENT_UPLOADS_PER_CLIENT
    assert own_cap < settings.MAX_CONCURRENT_UPLOADS
    UPLOAD_SLOTS.per_client["testclient"] += own_cap  # TestClient's address
    UPLOAD_SLOTS.in_flight += own_cap
    try:
        refused = upload(client, images.jpeg())
        UPLOAD_SLOTS.acquire("another-client", settings)  # free slots remain for everyone else
        UPLOAD_SLOTS.release("another-client")
    finally:
        UPLOAD_SLOTS.per_client["testclient"] -= own_cap
        UPLOAD_SLOTS.in_flight -= own_cap
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == str(settings.UPLOADS_BUSY_RETRY_AFTER_SECONDS)
    assert refused.json() == {"detail": "Too many uploads in progress from this address; retry shortly."}
    assert upload(client, images.jpeg()).status_code == 200
    assert UPLOAD_SLOTS.in_flight == 0 and not +UPLOAD_SLOTS.per_client
