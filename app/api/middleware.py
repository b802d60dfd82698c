"""Pure ASGI middleware: the request body's size and rate limits while it streams, cross-site request refusal,
delivery of the cookie for a newly issued anonymous identity, and the HTTP metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import Refusal, file_too_large, note_refusal, refusal_for, send_json
from app.core import metrics

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ISSUED_COOKIE = "imgproc.issued_cookie"
BODY_TOO_SLOW = "The request body arrived too slowly."


class RequestBodyGuard:
    """The request body's limits, enforced while it streams, before anything parses it:

    - size: over `max_bytes` (declared in Content-Length, or counted as a chunked body arrives)
      is 413 at once; a declared size is refused before a byte of the body is read;
    - rate: after `grace_seconds` from the app's first read, the body must have kept arriving at
      `min_bytes_per_second` on average, else 408 (Kestrel's MinRequestBodyDataRate): a slow
      sender cannot hold the request, its memory and its upload slot for ever;
    - an answer sent while the body is still unread (these, or a 429/503 decided before reading
      it) closes the connection: the rest of the body is not parsed, only dropped for a
      bounded while so that a proxy still writing it receives the answer (app.server's
      lingering close).

    The refused request's app sees the client leave (``http.disconnect``) and stops; whatever it
    then tries to send is dropped."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        advertised_limit: int,
        min_bytes_per_second: float,
        grace_seconds: float,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.advertised_limit = advertised_limit  # the file limit users know, without envelope slack
        self.min_bytes_per_second = min_bytes_per_second
        self.grace_seconds = grace_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            note_refusal(scope, Refusal.SIZE)
            await send_json(send, 413, file_too_large(self.advertised_limit), [(b"connection", b"close")])
            return
        has_body = b"transfer-encoding" in headers or (declared is not None and declared not in (b"", b"0"))

        loop = asyncio.get_running_loop()
        received = 0
        started_at: float | None = None
        body_done = not has_body
        refused = False
        responded = False

        async def refuse(status: int, detail: str, refusal: Refusal) -> Message:
            nonlocal refused
            refused = True
            if not responded:
                note_refusal(scope, refusal)
                await send_json(send, status, detail, [(b"connection", b"close")])
            return {"type": "http.disconnect"}

        async def guarded_receive() -> Message:
            nonlocal received, started_at, body_done
            if refused:
                return {"type": "http.disconnect"}
            if body_done:
                return await receive()
            if started_at is None:
                started_at = loop.time()
            # The latest moment the next bytes may arrive: the grace, plus the time the bytes so
            # far would take at the minimum rate.
            deadline = started_at + self.grace_seconds + received / self.min_bytes_per_second
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                return await refuse(408, BODY_TOO_SLOW, Refusal.SLOW_BODY)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    return await refuse(413, file_too_large(self.advertised_limit), Refusal.SIZE)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            if refused:
                return
            if message["type"] == "http.response.start":
                responded = True
                if not body_done:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not refused:
                raise


class CrossSiteGuard:
    """CSRF defence for cookie-authenticated state changes: refuse requests a browser
    marks as cross-site, and any foreign Origin that is not on the CORS allow-list."""

    def __init__(self, app: ASGIApp, *, allowed_origins: list[str], exempt_paths: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.exempt_paths = exempt_paths

    def _foreign(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        fetch_site = headers.get(b"sec-fetch-site", b"").decode("latin-1")
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/")
        if origin and origin in self.allowed_origins:
            return False
        if fetch_site == "cross-site":
            return True
        if origin and origin != "null":
            host = headers.get(b"host", b"").decode("latin-1")
            return urlsplit(origin).netloc != host
        return origin == "null"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and not scope["path"].startswith(self.exempt_paths)
            and self._foreign(scope)
        ):
            note_refusal(scope, Refusal.CROSS_SITE)
            await send_json(send, 403, "Cross-site request refused.")
            return
        await self.app(scope, receive, send)


class ResponseHeaders:
    """Headers every response carries (no MIME sniffing, no framing, no referrer leaks),
    plus the Set-Cookie of an identity issued during this request, on whatever response
    goes out, errors included, so the client keeps the identity it was given."""

    SECURITY_HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
        (b"referrer-policy", b"same-origin"),
    ]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        issued: dict[str, str] = {}
        scope[ISSUED_COOKIE] = issued

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *self.SECURITY_HEADERS]
                if "value" in issued:
                    headers.append((b"set-cookie", issued["value"].encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HttpMetrics:
    """imgproc_http_requests_total and imgproc_http_request_duration_seconds for every answer, and
    each upload counted as accepted or refused (with its Refusal). The outermost middleware, so
    that the guards' own answers (413, 408, 403) are counted too: for those the router never ran,
    and ``routes`` (the API's routes) give the template of the path."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = [route for route in routes if isinstance(route, Route)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what Starlette answers when the app raises before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self.record(scope, status, time.perf_counter() - started)

    def route_template(self, scope: Scope) -> str:
        """The path template of the route that answered ("/api/tasks/{task_id}"), or of the route
        the path belongs to when a guard answered before routing; UNMATCHED_ROUTE otherwise."""
        route = scope.get("route")
        if route is not None:
            return route.path
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        for candidate in self.routes:
            if candidate.path_regex.match(path):
                return candidate.path
        return metrics.UNMATCHED_ROUTE

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        route = self.route_template(scope)
        method = scope["method"] if scope["method"] in metrics.KNOWN_METHODS else "other"
        metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
        metrics.HTTP_REQUEST_DURATION.labels(route, method).observe(seconds)
        if route == metrics.UPLOAD_ROUTE and method == "POST":
            if status == 200:
                metrics.UPLOADS_ACCEPTED.inc()
            else:
                metrics.UPLOADS_REFUSED.labels(refusal_for(scope, status)).inc()
