from __future__ import annotations

import json

from app.core.config import get_settings
from app.core.webhook_signing import sign

WEBHOOK = "/api/webhook/task-complete"


def report_outcome(client, payload: dict, *, secret: bytes | None = None, headers: dict | None = None):
    body = json.dumps(payload).encode()
    signed = sign(secret or get_settings().webhook_secret(), body)
    return client.post(WEBHOOK, content=body, headers={"content-type": "application/json", **signed, **(headers or {})})
