"""How errors look over HTTP, in one place: every error answer is JSON ``{"detail": "..."}`` with
its status, and an outage of a dependency (database, file storage, queue) is a 503 with
``Retry-After``, so a client knows it may try again.

The error types the routes raise, the handlers that turn the layers' own exceptions into answers
(``add_error_handlers``), and the one writer for middleware that answers before any route runs
(``send_json``). The bytes of every answer are part of the contract (clients and tests read them):
routes' errors go through FastAPI's JSONResponse, the middleware's through ``json.dumps``.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from app.storage import StorageUnavailable
from app.tasks.queueing import BrokerUnavailable

log = logging.getLogger(__name__)

# How long a client waits before retrying after an outage of a dependency.
RETRY_AFTER_SECONDS = 5


# --- why an upload was refused (imgproc_uploads_refused_total) ----------------------------------
class Refusal(enum.StrEnum):
    """The reasons an upload is refused: a short, fixed list, so the metric's label stays bounded."""

    SIZE = "size"  # over IMGPROC_MAX_UPLOAD_BYTES (declared, streamed or counted by the route)
    TYPE = "type"  # not an image, or a format outside the allow-list (415)
    EMPTY = "empty"
    CORRUPT = "corrupt"
    PIXELS = "pixels"  # over IMGPROC_MAX_IMAGE_PIXELS
    PRESETS = "presets"  # unknown presets, or more outputs than IMGPROC_MAX_OUTPUTS_PER_TASK
    MALFORMED = "malformed"  # not valid multipart, no `file` field (400, 422)
    RATE_LIMIT = "rate_limit"  # IMGPROC_UPLOADS_PER_MINUTE_PER_USER
    SESSION_RATE_LIMIT = "session_rate_limit"  # IMGPROC_NEW_USERS_PER_MINUTE_PER_IP
    PENDING_CAP = "pending_cap"  # IMGPROC_MAX_PENDING_TASKS_PER_USER
    BUSY = "busy"  # IMGPROC_MAX_CONCURRENT_UPLOADS in flight in this process (503)
    CLIENT_BUSY = "client_busy"  # IMGPROC_MAX_CONCURRENT_UPLOADS_PER_CLIENT (429)
    SLOW_BODY = "slow_body"  # under IMGPROC_BODY_MIN_BYTES_PER_SECOND (408)
    CROSS_SITE = "cross_site"  # refused by the CSRF guard (403)
    QUEUE_UNAVAILABLE = "queue_unavailable"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    ERROR = "error"  # a 500, or a status no other reason covers


# Where the code that refuses a request notes why, for the metrics middleware to count once the
# answer is sent (app.api.middleware.HttpMetrics); unset, the status decides (refusal_for).
REFUSAL_SCOPE_KEY = "imgproc.refusal"
_REFUSAL_BY_STATUS = {400: Refusal.MALFORMED, 408: Refusal.SLOW_BODY, 413: Refusal.SIZE, 422: Refusal.MALFORMED}


def note_refusal(scope: Scope, refusal: Refusal) -> None:
    scope[REFUSAL_SCOPE_KEY] = refusal


def refusal_for(scope: Scope, status: int) -> Refusal:
    """Why the request answered with ``status`` was refused: as noted, else by its status."""
    return scope.get(REFUSAL_SCOPE_KEY) or _REFUSAL_BY_STATUS.get(status, Refusal.ERROR)


# --- the error types routes raise -------------------------------------------------------------
class Refused(HTTPException):
    """An HTTP error that names its Refusal (noted by the handler, add_error_handlers)."""

    def __init__(self, status_code: int, detail: str, refusal: Refusal, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code, detail, headers=headers)
        self.refusal = refusal


class TaskNotFound(HTTPException):
    """Another user's task and a missing one look the same."""

    def __init__(self) -> None:
        super().__init__(404, "Task not found.")


class TooManyRequests(Refused):
    def __init__(self, detail: str, retry_after: float, refusal: Refusal) -> None:
        super().__init__(429, detail, refusal, headers={"Retry-After": str(int(retry_after))})


class UploadsBusy(Refused):
    """This process has as many uploads in flight as it takes (MAX_CONCURRENT_UPLOADS)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            503, "Too many uploads in progress; retry shortly.", Refusal.BUSY, headers={"Retry-After": str(retry_after)}
        )


def file_too_large(limit: int) -> str:
    """The 413 detail, the same whether the body's stream (middleware) or the route notices."""
    return f"File too large: the limit is {limit} bytes."


class FileTooLarge(Refused):
    def __init__(self, limit: int) -> None:
        super().__init__(413, file_too_large(limit), Refusal.SIZE)


# --- answers written by ASGI middleware (no route, no exception handler) ---------------------------
async def send_json(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- handlers: the layers' exceptions as answers ---------------------------------------------
def _unavailable(request: Request, what: str, refusal: Refusal) -> JSONResponse:
    note_refusal(request.scope, refusal)
    return JSONResponse(
        {"detail": f"{what} is unavailable; retry shortly."},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_unavailable(request: Request, _exc: Exception) -> JSONResponse:
    return _unavailable(request, "The database", Refusal.DATABASE_UNAVAILABLE)


async def _storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("storage unavailable: %s", exc)
    return _unavailable(request, "File storage", Refusal.STORAGE_UNAVAILABLE)


async def _queue_unavailable(request: Request, _exc: Exception) -> JSONResponse:
    return _unavailable(request, "The processing queue", Refusal.QUEUE_UNAVAILABLE)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own answer for an HTTPException, after noting the Refusal it names."""
    assert isinstance(exc, Refused)
    note_refusal(request.scope, exc.refusal)
    return await http_exception_handler(request, exc)


async def _method_not_allowed(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Starlette answers from the first route whose path matches, so `Allow` would list only
    # that route's methods; collect them from every route on the path.
    allowed: set[str] = set()
    for route in request.app.state.api_routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            allowed |= route.methods
    return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))})


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(Refused, _refused)
    for exc_type in (OperationalError, PoolTimeout, DBAPIError):
        app.add_exception_handler(exc_type, _database_unavailable)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    app.add_exception_handler(BrokerUnavailable, _queue_unavailable)
