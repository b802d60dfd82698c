"""The HTTP server the API runs on: uvicorn with the h11 parser and two limits on the request head.

uvicorn's default parser with ``uvicorn[standard]`` is httptools, which has neither a size limit
nor a timeout for the request line and headers: 20 connections sending 16 MiB of unfinished
headers took the API from 193 to 505 MB, and 150 connections dripping a header byte every 3 s
stayed open forever (issue 20). uvicorn's ``timeout_keep_alive`` runs only between requests,
never before the first one's headers are in. So:

- ``--http h11`` with ``h11_max_incomplete_event_size``: h11 refuses a request head that grows past
  the cap (RemoteProtocolError, status hint 431) and holds at most the cap plus one read of it.
  uvicorn answers every protocol error with 400; ``GuardedH11Protocol`` answers this one with
  431, as nginx (``large_client_header_buffers``) and gunicorn (``limit_request_field_size``) do,
  and applies the same cap to a head that arrives whole in one read, which h11 lets through.
- a header deadline: from the connection (or, on a kept-alive one, the next request's first byte)
  until the head is complete, at most ``HEADER_TIMEOUT_SECONDS`` (nginx ``client_header_timeout``);
  then 408 and the connection is closed.

- a lingering close (nginx ``lingering_close``, Apache's ``lingering_close``): an answer sent
  before the request body was read (413, 408, or a 429/503 decided from the headers) ends with
  ``Connection: close``. Closing a socket with unread bytes makes the kernel reset the
  connection, and a proxy still writing the body (Traefik, nginx) then loses the answer it was
  sent and tells its client 502. So the server half-closes (FIN after the answer) and reads and
  drops what still comes for up to ``LINGER_SECONDS`` or ``MAX_UPLOAD_BYTES``, whichever ends
  first, and only then closes.

The body has its own minimum-rate deadline (app.api.middleware.RequestBodyGuard): it is read by
the app, not here. h11 is pure Python and costs more CPU than httptools: measured in-process,
about 60 µs more per request (head parse and answer) and 0.55 ms more per 4 MiB body in 64 KiB
reads, so about 0.8 ms of the API's 33 ms per 12 MP image (four requests) and 0.3 of its 19 ms
per 1080p image (bench_peers, 2026-12-07). Neither limit has an equal on httptools, so the trade
stays.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.core.config import Settings, get_settings

# How long a refused request's unread body is read and dropped before the connection closes
# (nginx's lingering_timeout is 5 s): long enough for a proxy on the same network to finish
# writing an upload of the accepted size, short enough to bound what a refused client costs.
LINGER_SECONDS = 5.0
HEADERS_TOO_LARGE = "Request header fields too large."
HEADERS_TOO_SLOW = "The request headers arrived too slowly."
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line that ends a head (h11 accepts bare LF too)


def raw_response(status: int, reason: str, detail: str) -> bytes:
    """A complete JSON error answer written straight to the socket: the header deadline fires
    before h11 has a request to answer, so h11 cannot frame it."""
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class LingeringTransport:
    """The transport uvicorn's protocol and request cycles are given: ``close()`` lingers while
    the client is still sending the request body (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self._protocol.lingering or self._transport.is_closing():
            return
        if self._protocol.conn.their_state is h11.SEND_BODY and self._transport.can_write_eof():
            self._protocol.linger()
        else:
            self._transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a 431 for an oversized head, and a
    lingering close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.header_timeout = settings.HEADER_TIMEOUT_SECONDS
        self.max_header_bytes = settings.MAX_HEADER_BYTES
        self.header_deadline: asyncio.TimerHandle | None = None
        self.linger_budget = settings.MAX_UPLOAD_BYTES
        self.lingering = False
        self.socket: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.socket = transport
        super().connection_made(LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm()

    def linger(self) -> None:
        """Half-closes after the answer and drops the rest of the body for a bounded while."""
        assert self.socket is not None
        self.lingering = True
        self._disarm()
        self.socket.write_eof()
        self.socket.resume_reading()  # uvicorn pauses reading while a request is handled
        self.loop.call_later(LINGER_SECONDS, self.socket.close)

    def eof_received(self) -> bool | None:
        if self.lingering:
            assert self.socket is not None
            self.socket.close()  # the client sent everything and is done
            return None
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self.linger_budget -= len(data)
            if self.linger_budget < 0:
                assert self.socket is not None
                self.socket.close()
            return
        if self.conn.their_state is h11.IDLE:
            # A kept-alive connection idles under uvicorn's keep-alive timeout; the next
            # request's first byte starts its own header deadline.
            if self.header_deadline is None:
                self._arm()
            # h11 bounds only a head still incomplete after a read: one that arrives whole in a
            # single read (up to 256 KiB) would pass. The cap holds for every head this way.
            head = self.conn.trailing_data[0] + data
            if len(head) > self.max_header_bytes and not _HEAD_END.search(head, 0, self.max_header_bytes + 4):
                self._refuse_head()
                return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in (or the connection is done)
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # h11 keeps what it could not parse; more than the cap means it gave up on the size.
        if len(self.conn.trailing_data[0]) > self.max_header_bytes:
            self._refuse_head()
            return
        super().send_400_response(msg)

    def _refuse_head(self) -> None:
        self._disarm()
        self.logger.warning("request head over %d bytes refused", self.max_header_bytes)
        self.transport.write(raw_response(431, "Request Header Fields Too Large", HEADERS_TOO_LARGE))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self.header_deadline = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _header_timed_out(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # a request was started: say why it ends
            self.transport.write(raw_response(408, "Request Timeout", HEADERS_TOO_SLOW))
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `imgproc api` (and so `imgproc run` and the image) passes to uvicorn."""
    return {
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": settings.MAX_HEADER_BYTES,
        "timeout_keep_alive": settings.KEEP_ALIVE_SECONDS,
        # No proxy trusted (the default): uvicorn must not read X-Forwarded-* at all; given no
        # list it would fall back to FORWARDED_ALLOW_IPS or 127.0.0.1.
        "proxy_headers": bool(settings.TRUSTED_PROXIES),
        "forwarded_allow_ips": ",".join(settings.TRUSTED_PROXIES) or None,
    }
