"""Pure ASGI middleware: body size limit while streaming, cross-site request refusal,
and delivery of the cookie for a newly issued anonymous identity."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import file_too_large, send_json

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ISSUED_COOKIE = "imgproc.issued_cookie"


class BodySizeLimit:
    """Refuses request bodies over `max_bytes` with 413 as soon as the limit is crossed,
    with or without Content-Length (chunked), instead of buffering the whole body first."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, advertised_limit: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.advertised_limit = advertised_limit  # the file limit users know, without envelope slack

    def _detail(self) -> str:
        return file_too_large(self.advertised_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_json(send, 413, self._detail(), [(b"connection", b"close")])
            return

        received = 0
        refused = False

        async def limited_receive() -> Message:
            # Once over the limit, answer 413 ourselves and tell the app the client left,
            # so it stops reading; whatever it then tries to send is dropped.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await send_json(send, 413, self._detail(), [(b"connection", b"close")])
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
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
