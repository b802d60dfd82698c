"""The API server's request-head limits (app.server), on uvicorn's h11 protocol with a stand-in
transport: no socket, no server. The real server is tried in
tests/integration/reliability/test_hostile_clients.py."""

from __future__ import annotations

import asyncio
import json

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from app import server
from app.core.config import get_settings
from app.server import HEADERS_TOO_LARGE, HEADERS_TOO_SLOW, GuardedH11Protocol, uvicorn_options


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.write_closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.write_closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def ok_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def refusing_app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """Answers from the head alone, as the rate limit does (app.api.middleware adds the close)."""
    await send({"type": "http.response.start", "status": 429, "headers": [(b"connection", b"close")]})
    await send({"type": "http.response.body", "body": b"no"})


def connect(loop: asyncio.AbstractEventLoop, app=ok_app) -> tuple[GuardedH11Protocol, Transport]:  # type: ignore[no-untyped-def]
    options = uvicorn_options(get_settings())
    config = Config(
        app=app, **{name: options[name] for name in ("http", "h11_max_incomplete_event_size", "timeout_keep_alive")}
    )
    config.load()
    protocol = GuardedH11Protocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


@pytest.fixture
def loop():  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def detail(written: bytes) -> str:
    return json.loads(written.split(b"\r\n\r\n", 1)[1])["detail"]


def test_a_head_over_the_cap_is_431_and_closed(configure, loop):
    configure(MAX_HEADER_BYTES=2048)
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
    assert transport.written.startswith(b"HTTP/1.1 431 ") and transport.closed
    assert detail(transport.written) == HEADERS_TOO_LARGE


def test_a_complete_head_over_the_cap_in_one_read_is_431_too(configure, loop):
    configure(MAX_HEADER_BYTES=2048)
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 431 ") and transport.closed


def test_a_head_under_the_cap_with_its_body_in_the_same_read_passes(configure, loop):
    configure(MAX_HEADER_BYTES=2048)
    protocol, transport = connect(loop)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8000\r\n\r\n" + b"a" * 8000)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert transport.written.startswith(b"HTTP/1.1 200 ")


def test_an_unfinished_head_is_408_and_closed_at_the_deadline(configure, loop):
    configure(HEADER_TIMEOUT_SECONDS=0.1)
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n")
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.written.startswith(b"HTTP/1.1 408 ") and transport.closed
    assert detail(transport.written) == HEADERS_TOO_SLOW


def test_a_silent_connection_is_closed_at_the_deadline_without_an_answer(configure, loop):
    configure(HEADER_TIMEOUT_SECONDS=0.1)
    _protocol, transport = connect(loop)
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.closed and transport.written == b""


def test_a_complete_head_stops_the_deadline(configure, loop):
    configure(HEADER_TIMEOUT_SECONDS=0.1)
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert protocol.header_deadline is None
    loop.run_until_complete(asyncio.sleep(0.05))  # the app answers
    assert transport.written.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("seconds", [2, 95])  # neither is uvicorn's default (5 s)
def test_an_answered_connection_is_kept_alive_for_the_configured_time(configure, loop, seconds):
    """The chart keeps the API's idle connections open longer than the proxy's pool does; the
    proxy, not the API, then closes an idle connection, and never sends on a closing one."""
    configure(KEEP_ALIVE_SECONDS=seconds)
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.05))  # the app answers
    assert transport.written.startswith(b"HTTP/1.1 200 ") and not transport.closed
    closes_in = protocol.timeout_keep_alive_task.when() - loop.time()
    assert seconds - 1.5 < closes_in <= seconds  # room for a loaded machine's stall; uvicorn's 5 s fails both


def test_a_malformed_head_under_the_cap_is_still_uvicorns_400(loop):
    protocol, transport = connect(loop)
    protocol.data_received(b"NOT HTTP\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 400 ") and transport.closed


UPLOAD_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"


def refused_mid_body(loop: asyncio.AbstractEventLoop) -> tuple[GuardedH11Protocol, Transport]:
    protocol, transport = connect(loop, refusing_app)
    protocol.data_received(UPLOAD_HEAD + b"a" * 1000)
    loop.run_until_complete(asyncio.sleep(0.05))  # the app answers before reading the body
    assert transport.written.startswith(b"HTTP/1.1 429 ")
    return protocol, transport


def test_an_answer_before_the_body_half_closes_and_drops_the_rest(configure, loop):
    configure(MAX_UPLOAD_BYTES=1_000_000)
    protocol, transport = refused_mid_body(loop)
    # Half-closed: the answer and a FIN went out; the socket stays open to read, so the kernel
    # does not reset a peer that is still writing (a proxy would turn that into a 502).
    assert transport.write_closed and not transport.closed
    answered = transport.written
    protocol.data_received(b"a" * 500_000)
    assert transport.written == answered and not transport.closed  # dropped, no second answer
    protocol.eof_received()  # the client is done sending
    assert transport.closed


def test_lingering_ends_when_the_dropped_bytes_pass_the_upload_limit(configure, loop):
    configure(MAX_UPLOAD_BYTES=100_000)
    protocol, transport = refused_mid_body(loop)
    protocol.data_received(b"a" * 60_000)
    assert not transport.closed
    protocol.data_received(b"a" * 60_000)
    assert transport.closed


def test_lingering_ends_after_linger_seconds(configure, loop, monkeypatch):
    configure()
    # Ten times refused_mid_body's wait for the answer, so a loaded machine (CI builds Go beside
    # the unit tests) cannot let the linger run out before the first look.
    monkeypatch.setattr(server, "LINGER_SECONDS", 0.5)
    _protocol, transport = refused_mid_body(loop)
    assert not transport.closed

    async def closed_within(seconds: float) -> bool:
        deadline = loop.time() + seconds
        while not transport.closed and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return transport.closed

    assert loop.run_until_complete(closed_within(10))


def test_a_close_with_no_body_unread_is_immediate(loop):
    protocol, transport = connect(loop, refusing_app)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.05))
    assert transport.written.startswith(b"HTTP/1.1 429 ") and transport.closed and not transport.write_closed


def test_an_http11_request_needs_a_host_an_http10_one_does_not(loop):
    """h11 holds HTTP/1.1 to RFC 9112's mandatory Host (httptools did not): a proxy that speaks
    HTTP/1.1 to the API must always send one, also for an HTTP/1.0 client that sent none
    (compose/nginx.conf; its health check is such a client)."""
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.1\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 400 ") and transport.closed
    protocol, transport = connect(loop)
    protocol.data_received(b"GET / HTTP/1.0\r\n\r\n")
    loop.run_until_complete(asyncio.sleep(0.05))
    assert transport.written.startswith(b"HTTP/1.1 200 ")


def test_no_forwarding_header_is_read_unless_proxies_are_trusted(configure):
    configure()
    assert uvicorn_options(get_settings())["proxy_headers"] is False
    configure(TRUSTED_PROXIES='["10.0.0.0/8", "10.1.2.3"]')
    options = uvicorn_options(get_settings())
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == "10.0.0.0/8,10.1.2.3"
