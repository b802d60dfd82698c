"""Delivery of outcome reports to the API's signed webhook."""

from __future__ import annotations

from functools import lru_cache

import httpx

from app.core.config import Settings
from app.core.webhook_signing import WEBHOOK_PATH, sign


class ReportNotDelivered(Exception):
    """The API did not acknowledge; the report must be retried."""


class TaskGone(Exception):
    """The API no longer knows the task (deleted by its owner)."""


@lru_cache
def _client() -> httpx.Client:
    # One keep-alive connection pool per worker process (created after the prefork fork).
    return httpx.Client(timeout=10.0)


def deliver(settings: Settings, body: bytes) -> dict:
    headers = {"Content-Type": "application/json", **sign(settings.webhook_secret(), body)}
    try:
        response = _client().post(settings.api_internal_url + WEBHOOK_PATH, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise ReportNotDelivered(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code == 404:
        raise TaskGone(response.text)
    if response.status_code != 200:
        raise ReportNotDelivered(f"HTTP {response.status_code}: {response.text[:200]}")
    return response.json()
