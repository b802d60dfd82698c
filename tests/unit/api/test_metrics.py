"""The API's metrics through the real app: requests by route template, uploads accepted and refused
by reason, the status waiters, and /metrics (embedded only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.deps import UPLOAD_SLOTS
from app.api.errors import Refusal
from app.core.config import get_settings
from app.storage import StorageUnavailable
from app.storage.filesystem import FileSystemStorage
from tests.support import images
from tests.support.metrics import Counts, series, value
from tests.support.tasks import UPLOAD, upload

REQUESTS = "imgproc_http_requests_total"
ACCEPTED = ("imgproc_uploads_accepted_total", {})
MAX_UPLOAD_BYTES = 200_000


def refused(reason: Refusal) -> tuple[str, dict[str, str]]:
    return ("imgproc_uploads_refused_total", {"reason": reason.value})


@pytest.fixture
def small_limits_client(configure, queue) -> Iterator[TestClient]:
    """The app with a small upload limit (the body guard takes its limit when the app is made)."""
    from app.main import create_app

    configure(MAX_UPLOAD_BYTES=MAX_UPLOAD_BYTES)
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


def test_requests_are_counted_by_route_template_never_the_raw_path(client):
    counts = Counts(
        (REQUESTS, {"route": "/api/tasks/{task_id}", "method": "GET", "status": "404"}),
        (REQUESTS, {"route": "unmatched", "method": "GET", "status": "404"}),
        (REQUESTS, {"route": "/api/tasks/{task_id}", "method": "other", "status": "405"}),
        ("imgproc_http_request_duration_seconds_count", {"route": "/api/tasks/{task_id}", "method": "GET"}),
    )
    for task_id in (5, 6, 7):
        assert client.get(f"/api/tasks/{task_id}").status_code == 404
    for path in ("/no/such/path", "/wp-login.php"):
        assert client.get(path).status_code == 404
    assert client.request("BREW", "/api/tasks/5").status_code == 405
    assert list(counts.changes().values()) == [3, 2, 1, 3]
    assert value(REQUESTS, route="/api/tasks/5", method="GET", status="404") == 0


def test_an_answer_of_a_guard_is_counted_under_the_route_the_path_belongs_to(small_limits_client):
    counts = Counts((REQUESTS, {"route": UPLOAD, "method": "POST", "status": "413"}))
    response = upload(small_limits_client, b"\xff" * (MAX_UPLOAD_BYTES + 70_000))  # refused before routing
    assert response.status_code == 413
    assert list(counts.changes().values()) == [1]


def _rate_limited(client: TestClient) -> None:
    assert upload(client).status_code == 200
    assert upload(client).status_code == 429


def _over_every_slot(client: TestClient) -> None:
    limit = get_settings().MAX_CONCURRENT_UPLOADS
    UPLOAD_SLOTS.in_flight += limit
    try:
        assert upload(client).status_code == 503
    finally:
        UPLOAD_SLOTS.in_flight -= limit


def _over_the_clients_slots(client: TestClient) -> None:
    own_cap = get_settings().MAX_CONCURRENT_UPLOADS_PER_CLIENT
    UPLOAD_SLOTS.per_client["testclient"] += own_cap
    try:
        assert upload(client).status_code == 429
    finally:
        UPLOAD_SLOTS.per_client["testclient"] -= own_cap
        del UPLOAD_SLOTS.per_client["testclient"]


def _storage_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_args: object, **_kwargs: object) -> None:
        raise StorageUnavailable("test: the store is down")

    monkeypatch.setattr(FileSystemStorage, "write", unreachable)
    storage_errors = Counts(
        ("imgproc_storage_errors_total", {"backend": "filesystem", "operation": "write", "error": "unavailable"})
    )
    assert upload(client).status_code == 503
    assert list(storage_errors.changes().values()) == [1]  # the metered wrapper saw it too


def _new_session_after_the_limit(client: TestClient) -> None:
    assert upload(client).status_code == 200
    client.cookies.clear()  # a new visitor from the same address
    assert upload(client).status_code == 429


def _pixels() -> bytes:
    return images.encode(Image.new("1", (10000, 10000)), "PNG")  # 100 MP in a few KB


# (settings, the refusal, what it does, uploads accepted on the way)
CASES: dict[str, tuple[dict[str, object], Refusal, Callable[..., None], int]] = {
    "declared-too-large": (
        {},
        Refusal.SIZE,
        lambda c: upload(c, b"\xff" * (MAX_UPLOAD_BYTES + 70_000)).status_code == 413 or pytest.fail("not 413"),
        0,
    ),
    "counted-too-large": (
        {},
        Refusal.SIZE,
        lambda c: upload(c, b"\xff" * (MAX_UPLOAD_BYTES + 1)).status_code == 413 or pytest.fail("not 413"),
        0,
    ),
    "not-an-image": ({}, Refusal.TYPE, lambda c: upload(c, b"hello, this is text").status_code == 415, 0),
    "empty": ({}, Refusal.EMPTY, lambda c: upload(c, b"").status_code == 422, 0),
    "truncated": ({}, Refusal.CORRUPT, lambda c: upload(c, images.jpeg()[:400]).status_code == 422, 0),
    "pixels": ({}, Refusal.PIXELS, lambda c: upload(c, _pixels(), "bomb.png", "image/png").status_code == 422, 0),
    "unknown-preset": (
        {},
        Refusal.PRESETS,
        lambda c: c.post(UPLOAD, files={"file": ("a.jpg", images.jpeg(), "image/jpeg")}, data={"presets": "nope"}),
        0,
    ),
    "no-file-field": ({}, Refusal.MALFORMED, lambda c: c.post(UPLOAD, data={"other": "x"}), 0),
    "cross-site": ({}, Refusal.CROSS_SITE, lambda c: upload_from(c, "https://evil.example"), 0),
    "rate-limit": ({"UPLOADS_PER_MINUTE_PER_USER": 1}, Refusal.RATE_LIMIT, _rate_limited, 1),
    "session-rate-limit": (
        {"NEW_USERS_PER_MINUTE_PER_IP": 1},
        Refusal.SESSION_RATE_LIMIT,
        _new_session_after_the_limit,
        1,
    ),
    "pending-cap": ({"MAX_PENDING_TASKS_PER_USER": 1}, Refusal.PENDING_CAP, _rate_limited, 1),
    "process-busy": ({}, Refusal.BUSY, _over_every_slot, 0),
    "client-busy": ({}, Refusal.CLIENT_BUSY, _over_the_clients_slots, 0),
}


def upload_from(client: TestClient, origin: str) -> None:
    response = client.post(UPLOAD, files={"file": ("a.jpg", images.jpeg(), "image/jpeg")}, headers={"origin": origin})
    assert response.status_code == 403


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_refused_upload_is_counted_once_under_its_reason(configure, small_limits_client, case):
    settings, reason, act, accepted = CASES[case]
    if settings:
        configure(**settings)
    counts = Counts(ACCEPTED, *(refused(other) for other in Refusal))
    act(small_limits_client)
    expected = {series(*refused(reason)): 1, **({series(*ACCEPTED): accepted} if accepted else {})}
    assert counts.moved() == expected


@pytest.mark.parametrize("outage", ["queue", "storage"])
def test_an_outage_refuses_the_upload_as_unavailable(client, queue, monkeypatch, outage):
    counts = Counts(ACCEPTED, *(refused(other) for other in Refusal))
    if outage == "queue":
        queue.fail = True
        assert upload(client).status_code == 503
    else:
        _storage_down(client, monkeypatch)
    reason = Refusal.QUEUE_UNAVAILABLE if outage == "queue" else Refusal.STORAGE_UNAVAILABLE
    assert counts.moved() == {series(*refused(reason)): 1}


def test_an_accepted_upload_is_counted_and_nothing_refused(client):
    counts = Counts(ACCEPTED, *(refused(other) for other in Refusal))
    assert upload(client).status_code == 200
    assert counts.moved() == {series(*ACCEPTED): 1}


def test_status_waiters_are_counted_while_they_wait():
    from app.api.outcome_waiters import waiting_for

    async def wait_twice() -> list[float]:
        seen = []
        with waiting_for(1), waiting_for(1):
            seen.append(value("imgproc_status_waiters"))
        seen.append(value("imgproc_status_waiters"))
        return seen

    before = value("imgproc_status_waiters")
    assert asyncio.run(wait_twice()) == [before + 2, before]


def test_embedded_mode_serves_metrics_on_the_api_outside_the_schema(client):
    client.get("/livez")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'imgproc_http_requests_total{method="GET",route="/livez",status="200"}' in response.text
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_outside_embedded_mode_the_api_has_no_metrics_route(configure):
    from app.main import create_app

    configure(DATABASE_URL="postgresql+psycopg2://u@127.0.0.1:1/db", BROKER_URL="redis://127.0.0.1:1/0")
    client = TestClient(create_app())  # no lifespan: nothing is connected
    assert client.get("/metrics").status_code == 404
