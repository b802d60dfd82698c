from __future__ import annotations

import hashlib

from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.tasks.records import User
from tests.support import images
from tests.support.tasks import upload


def test_first_request_issues_a_hardened_random_cookie(client):
    response = client.get("/api/tasks")
    header = response.headers["set-cookie"]
    name = get_settings().COOKIE_NAME
    token = response.cookies[name]
    assert len(token) >= 43  # 32 random bytes, url-safe base64
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "samesite=lax" in header.lower() and "path=/" in header.lower()
    assert "domain" not in attributes


def test_cookie_is_secure_outside_embedded_mode(configure, tmp_path):
    from app.api.deps import _cookie_header

    configure(DATA_DIR=tmp_path, DATABASE_URL="postgresql+psycopg2://u@h/db", WEBHOOK_SECRET="x" * 32)
    assert get_settings().cookie_secure is True
    assert "Secure" in _cookie_header(get_settings(), "t")


def test_the_cookie_is_reused_and_no_second_user_is_made(client):
    client.get("/api/tasks")
    second = client.get("/api/tasks")
    assert "set-cookie" not in second.headers
    with session_scope() as session:
        assert len(session.scalars(select(User)).all()) == 1


def test_only_a_hash_of_the_token_is_stored(client):
    token = client.get("/api/tasks").cookies[get_settings().COOKIE_NAME]
    with session_scope() as session:
        stored = session.scalars(select(User.token_hash)).all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in stored


def test_a_forged_cookie_or_the_stored_hash_is_a_new_identity(make_client):
    alice = make_client()
    task_id = upload(alice, images.jpeg()).json()["task_id"]
    token = alice.cookies[get_settings().COOKIE_NAME]
    altered = token[:-1] + ("B" if token.endswith("A") else "A")
    for forged in (hashlib.sha256(token.encode()).hexdigest(), altered, "x" * 500):
        mallory = make_client()
        mallory.cookies.set(get_settings().COOKIE_NAME, forged)
        response = mallory.get(f"/api/isReady/{task_id}")
        assert response.status_code == 404
        assert "set-cookie" in response.headers  # treated as a newcomer


def test_first_request_that_fails_still_keeps_its_identity(client):
    response = upload(client, b"")
    assert response.status_code == 422
    assert get_settings().COOKIE_NAME in response.cookies


def test_cross_site_state_changes_are_refused(client):
    data = images.jpeg(64, 48)
    files = {"file": ("a.jpg", data, "image/jpeg")}
    assert client.post("/api/newTask", files=files, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/api/newTask", files=files, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/api/newTask", files=files, headers={"Origin": "http://testserver"}).status_code == 200
    assert client.post("/api/newTask", files=files, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_new_identities_are_rate_limited_per_address(configure, embedded, make_client):
    configure(NEW_USERS_PER_MINUTE_PER_IP=3)
    statuses = [make_client().get("/api/tasks").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = make_client().get("/api/tasks")
    assert int(limited.headers["retry-after"]) >= 1


def test_uploads_are_rate_limited_per_user(configure, embedded, make_client):
    configure(UPLOADS_PER_MINUTE_PER_USER=2)
    client = make_client()
    statuses = [upload(client, images.jpeg(32, 32)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_unfinished_tasks_per_user_are_capped(configure, embedded, make_client):
    configure(MAX_PENDING_TASKS_PER_USER=2)
    client = make_client()
    statuses = [upload(client, images.jpeg(32, 32)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert "unfinished" in upload(client, images.jpeg(32, 32)).json()["detail"]


def test_cors_answers_only_listed_origins(configure, embedded, queue):
    from fastapi.testclient import TestClient

    from app.main import create_app

    configure(CORS_ORIGINS='["https://app.example"]')
    preflight = {"Access-Control-Request-Method": "POST"}
    with TestClient(create_app()) as client:
        allowed = client.options("/api/newTask", headers={"Origin": "https://app.example", **preflight})
        foreign = client.options("/api/newTask", headers={"Origin": "https://evil.example", **preflight})
        listed_post = client.post(
            "/api/newTask", files={"file": ("a.jpg", images.jpeg(32, 32))}, headers={"Origin": "https://app.example"}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in foreign.headers
    assert listed_post.status_code == 200  # an allowed origin passes the cross-site guard too


def test_an_allowed_origin_can_read_the_413_of_an_oversize_upload(configure, embedded, queue):
    from fastapi.testclient import TestClient

    from app.main import create_app

    configure(CORS_ORIGINS='["https://app.example"]', MAX_UPLOAD_BYTES=1000)
    with TestClient(create_app()) as client:
        response = client.post(
            "/api/newTask",
            files={"file": ("a.bin", b"\0" * 200_000)},
            headers={"Origin": "https://app.example"},
        )
    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.json()["detail"] == "File too large: the limit is 1000 bytes."


def _user_selects(engine) -> list[str]:
    """The SELECTs on users the engine runs from now on."""
    from sqlalchemy import event

    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def test_a_known_identity_is_not_looked_up_again(client):
    from app.core.db import get_engine

    task_id = upload(client, images.jpeg(32, 32)).json()["task_id"]  # makes the user
    selects = _user_selects(get_engine())
    for _ in range(3):
        assert client.get(f"/api/isReady/{task_id}").json()["id"] == task_id
    assert upload(client, images.jpeg(32, 32)).status_code == 200
    assert len(selects) == 1  # the first request after the user was made; then it is known


def test_a_known_identity_is_looked_up_again_after_its_time(client, monkeypatch):
    from app.api.deps import KnownUsers
    from app.core.db import get_engine

    task_id = upload(client, images.jpeg(32, 32)).json()["task_id"]
    monkeypatch.setattr(KnownUsers, "TTL_SECONDS", 0.0)
    selects = _user_selects(get_engine())
    for _ in range(3):
        assert client.get(f"/api/isReady/{task_id}").json()["id"] == task_id
    assert len(selects) == 3


def test_known_identities_are_bounded_and_expire(monkeypatch):
    from app.api import deps

    clock = [1000.0]
    monkeypatch.setattr(deps.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(deps.KnownUsers, "MAX_ENTRIES", 2)
    known = deps.KnownUsers()
    known.add("a", 1)
    known.add("b", 2)
    assert known.get("a") == 1  # now the most recently used
    known.add("c", 3)
    assert (known.get("a"), known.get("b"), known.get("c")) == (1, None, 3)  # b went first
    clock[0] += deps.KnownUsers.TTL_SECONDS
    assert known.get("a") is None and known.get("c") is None


def test_forged_cookies_cannot_push_a_known_identity_out(make_client, monkeypatch):
    from app.api.deps import KnownUsers
    from app.core.db import get_engine

    monkeypatch.setattr(KnownUsers, "MAX_ENTRIES", 1)
    alice = make_client()
    alice.get("/api/tasks")
    alice.get("/api/tasks")  # looked up once: now the one known identity
    for forged in ("forged-1", "forged-2"):
        mallory = make_client()
        mallory.cookies.set(get_settings().COOKIE_NAME, forged)
        assert "set-cookie" in mallory.get("/api/tasks").headers  # a newcomer, not remembered
    selects = _user_selects(get_engine())
    alice.get("/api/tasks")
    assert selects == []  # alice was not evicted by the forged cookies
