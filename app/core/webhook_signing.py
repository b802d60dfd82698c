"""The worker -> API report webhook, shared by both sides (pure): where it is and how a report
is signed (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

# Internal routes: the Ingress does not route this prefix, and the cross-site guard leaves it to
# the signature (the worker sends no Origin).
WEBHOOK_PREFIX = "/api/webhook/"
WEBHOOK_PATH = WEBHOOK_PREFIX + "task-complete"

TIMESTAMP_HEADER = "X-Imgproc-Timestamp"
DELIVERY_HEADER = "X-Imgproc-Delivery"
SIGNATURE_HEADER = "X-Imgproc-Signature"
_PREFIX = "sha256="


class SignatureError(Exception):
    """The request is not a fresh report signed with our key."""


def _digest(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    message = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """Headers for one delivery attempt: a new id and timestamp every time."""
    delivery_id = secrets.token_hex(16)
    timestamp = str(int(time.time() if now is None else now))
    return {
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: _PREFIX + _digest(secret, delivery_id, timestamp, body),
    }


@dataclass(frozen=True)
class VerifiedDelivery:
    delivery_id: str
    timestamp: int


def verify(
    secret: bytes, headers: dict[str, str], body: bytes, *, tolerance: int, now: float | None = None
) -> VerifiedDelivery:
    delivery_id = headers.get(DELIVERY_HEADER.lower(), "")
    timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
    signature = headers.get(SIGNATURE_HEADER.lower(), "")
    if not (delivery_id and timestamp and signature):
        raise SignatureError("missing signature headers")
    if not (1 <= len(delivery_id) <= 64) or not timestamp.isdigit():
        raise SignatureError("malformed signature headers")
    expected = _PREFIX + _digest(secret, delivery_id, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("bad signature")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise SignatureError("timestamp outside the allowed window")
    return VerifiedDelivery(delivery_id, int(timestamp))
