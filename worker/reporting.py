"""Delivery of outcome reports to the API's signed webhook."""

from __future__ import annotations

import httpx

from app.core.config import Settings
from app.core.webhook_signing import sign

WEBHOOK_PATH = "/api/webhook/task-complete"


class ReportNotDelivered(Exception):
    """The API did not acknowledge; the report must be retried."""


class TaskGone(Exception):
    """The API no longer knows the task (deleted by its owner)."""


def deliver(settings: Settings, body: bytes, *, timeout: float = 10.0) -> dict:
    headers = {"Content-Type": "application/json", **sign(settings.webhook_secret(), body)}
    try:
        response = httpx.post(settings.api_internal_url + WEBHOOK_PATH, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ReportNotDelivered(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code == 404:
        raise TaskGone(response.text)
    if response.status_code != 200:
        raise ReportNotDelivered(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json()
