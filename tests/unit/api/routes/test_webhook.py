from __future__ import annotations

import json
import time

from app.core.config import get_settings
from app.core.webhook_signing import sign
from tests.support import images
from tests.support.metrics import Counts
from tests.support.signing import WEBHOOK, report_outcome
from tests.support.tasks import upload

FAILED = {"status": "failed", "error": "image file is truncated"}


def test_a_signed_report_moves_the_task_to_its_terminal_state(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    response = report_outcome(client, {"task_id": task_id, **FAILED})
    assert response.status_code == 200
    assert response.json() == {"task_id": task_id, "status": "failed", "applied": True}
    status = client.get(f"/api/isReady/{task_id}").json()
    assert status["status"] == "failed" and status["error"] == "image file is truncated"


def test_a_duplicate_report_never_moves_a_finished_task(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    assert report_outcome(client, {"task_id": task_id, **FAILED}).json()["applied"] is True
    late = report_outcome(client, {"task_id": task_id, "status": "completed", "result_path": "x"})
    assert late.status_code == 200 and late.json() == {"task_id": task_id, "status": "failed", "applied": False}
    assert client.get(f"/api/isReady/{task_id}").json()["status"] == "failed"


def test_unsigned_wrong_key_tampered_stale_and_replayed_reports_are_401(client):
    task_id = upload(client, images.jpeg()).json()["task_id"]
    body = json.dumps({"task_id": task_id, **FAILED}).encode()
    secret = get_settings().webhook_secret()

    def post(content: bytes, headers: dict):
        return client.post(WEBHOOK, content=content, headers={"content-type": "application/json", **headers})

    unsigned = post(body, {})
    wrong_key = post(body, sign(b"not-the-secret-not-the-secret", body))
    tampered = post(body.replace(b"truncated", b"fine"), sign(secret, body))
    stale = post(body, sign(secret, body, now=time.time() - 3600))
    future = post(body, sign(secret, body, now=time.time() + 3600))
    headers = sign(secret, body)
    first = post(body, headers)
    replay = post(body, headers)

    for response in (unsigned, wrong_key, tampered, stale, future, replay):
        assert response.status_code == 401, response.text
        assert response.json()["detail"].startswith("Webhook rejected")
    assert first.status_code == 200
    assert "replay" in replay.json()["detail"]


def test_report_for_an_unknown_task_is_404(client):
    response = report_outcome(client, {"task_id": 999999, **FAILED})
    assert response.status_code == 404


def test_a_signed_but_malformed_report_is_422(client):
    response = report_outcome(client, {"task_id": 1, "status": "exploded"})
    assert response.status_code == 422
    assert "Invalid report" in response.json()["detail"]


def test_webhook_is_exempt_from_the_cross_site_guard_but_not_from_signatures(client):
    response = client.post(WEBHOOK, content=b"{}", headers={"Origin": "https://evil.example"})
    assert response.status_code == 401


def test_reports_are_counted_as_applied_ignored_or_refused_by_reason(client):
    reports = "imgproc_webhook_reports_total"
    watched = [
        ("applied", "failed"),
        ("ignored", "already_finished"),
        ("ignored", "task_gone"),
        ("refused", "signature"),
        ("refused", "replay"),
        ("refused", "invalid"),
    ]
    counts = Counts(*((reports, {"result": result, "reason": reason}) for result, reason in watched))
    task_id = upload(client, images.jpeg()).json()["task_id"]
    body = json.dumps({"task_id": task_id, **FAILED}).encode()
    headers = {"content-type": "application/json", **sign(get_settings().webhook_secret(), body)}
    assert client.post(WEBHOOK, content=body, headers=headers).status_code == 200  # applied
    assert client.post(WEBHOOK, content=body, headers=headers).status_code == 401  # the same delivery again
    assert report_outcome(client, {"task_id": task_id, **FAILED}).json()["applied"] is False
    assert report_outcome(client, {"task_id": 999999, **FAILED}).status_code == 404
    assert report_outcome(client, {"task_id": task_id, "status": "exploded"}).status_code == 422
    assert report_outcome(client, {"task_id": task_id, **FAILED}, secret=b"x" * 32).status_code == 401
    assert list(counts.changes().values()) == [1, 1, 1, 1, 1, 1]
