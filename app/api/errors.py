"""How errors look over HTTP, in one place: every error answer is JSON ``{"detail": "..."}`` with
its status, and an outage of a dependency (database, file storage, queue) is a 503 with
``Retry-After``, so a client knows it may try again.

The error types the routes raise, the handlers that turn the layers' own exceptions into answers
(``add_error_handlers``), and the one writer for middleware that answers before any route runs
(``send_json``). The bytes of every answer are part of the contract (clients and tests read them):
routes' errors go through FastAPI's JSONResponse, the middleware's through ``json.dumps``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from app.storage import StorageUnavailable
from app.tasks.queueing import BrokerUnavailable

log = logging.getLogger(__name__)

# How long a client waits before retrying after an outage of a dependency.
RETRY_AFTER_SECONDS = 5


# --- the error types routes raise -------------------------------------------------------------
class TaskNotFound(HTTPException):
    """Another user's task and a missing one look the same."""

    def __init__(self) -> None:
        super().__init__(404, "Task not found.")


class TooManyRequests(HTTPException):
    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(429, detail, headers={"Retry-After": str(int(retry_after))})


class UploadsBusy(HTTPException):
    """This process has as many uploads in flight as it takes (MAX_CONCURRENT_UPLOADS)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(503, "Too many uploads in progress; retry shortly.", headers={"Retry-After": str(retry_after)})


def file_too_large(limit: int) -> str:
    """The 413 detail, the same whether the body's stream (middleware) or the route notices."""
    return f"File too large: the limit is {limit} bytes."


class FileTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, file_too_large(limit))


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
def _unavailable(what: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"{what} is unavailable; retry shortly."},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _database_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
    return _unavailable("The database")


async def _storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("storage unavailable: %s", exc)
    return _unavailable("File storage")


async def _queue_unavailable(_request: Request, _exc: Exception) -> JSONResponse:
    return _unavailable("The processing queue")


async def _method_not_allowed(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Starlette answers from the first route whose path matches, so `Allow` would list only
    # that route's methods; collect them from every route on the path.
    allowed: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            allowed |= route.methods
    return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))})


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(405, _method_not_allowed)
    for exc_type in (OperationalError, PoolTimeout, DBAPIError):
        app.add_exception_handler(exc_type, _database_unavailable)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
    app.add_exception_handler(BrokerUnavailable, _queue_unavailable)
