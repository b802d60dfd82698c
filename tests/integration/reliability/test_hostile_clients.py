"""Slow and hostile clients against the real API process in embedded mode (SQLite, the setup
issue 20 froze): slow uploads sharing a cookie while a well-behaved client polls, header floods,
dripping heads and bodies, an over-limit chunked body, and the refusals that need no body.

Every load here is bounded in count and time and stays on loopback. Figures go to
`make reliability` (kind "clients", tests/support/report.py) before the assertions, so a run
against older code still reports what it measured."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.services import ServiceStack, embedded_env, running_stack
from tests.support.report import record
from tests.support.slow_clients import RssPeak, dripping_head, oversized_head, slow_uploads_in_a_process, status_of
from tests.support.tasks import small_jpeg, upload_accepted

HEADER_TIMEOUT = 3.0
BODY_GRACE = 3.0
MAX_UPLOAD = 1024 * 1024
MAX_CONCURRENT_UPLOADS = 32
SETTINGS = {
    # The per-user and per-address limits are not under test here (one cookie, one address).
    "UPLOADS_PER_MINUTE_PER_USER": 100_000,
    "MAX_PENDING_TASKS_PER_USER": 100_000,
    "NEW_USERS_PER_MINUTE_PER_IP": 100_000,
    "HEADER_TIMEOUT_SECONDS": HEADER_TIMEOUT,
    "BODY_GRACE_SECONDS": BODY_GRACE,
    "BODY_MIN_BYTES_PER_SECOND": 1024,
    "MAX_UPLOAD_BYTES": MAX_UPLOAD,
    "MAX_CONCURRENT_UPLOADS": MAX_CONCURRENT_UPLOADS,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ServiceStack]:
    base = tmp_path_factory.mktemp("hostile-clients")
    env = {**embedded_env(base / "data"), **{f"IMGPROC_{k}": str(v) for k, v in SETTINGS.items()}}
    with running_stack(env, base / "logs", workers=0) as running:
        yield running


def _p95(values: list[float]) -> float:
    return round(statistics.quantiles(values, n=20)[-1], 1) if len(values) >= 2 else (values or [0.0])[0]


class Poller(threading.Thread):
    """A well-behaved client: polls its task's status and /readyz every 50 ms."""

    def __init__(self, url: str, cookie: httpx.Cookies, task_id: int) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, cookies=cookie, timeout=5)
        self.task_id = task_id
        self.stop = threading.Event()
        self.latencies_ms: list[float] = []
        self.outcomes: Counter[str] = Counter()

    def run(self) -> None:
        with self.client:
            while not self.stop.is_set():
                for path in (f"/api/isReady/{self.task_id}", "/readyz"):
                    started = time.monotonic()
                    try:
                        outcome = str(self.client.get(path).status_code)
                    except httpx.HTTPError:
                        outcome = "timeout"
                    self.latencies_ms.append((time.monotonic() - started) * 1000)
                    self.outcomes[outcome] += 1
                self.stop.wait(0.05)


def test_slow_uploads_sharing_a_cookie_leave_status_fast(stack):
    clients, seconds = 200, 20.0
    with stack.client() as owner:
        task_id = upload_accepted(owner, small_jpeg())
        poller = Poller(stack.url, owner.cookies, task_id)
    with stack.client() as attacker:
        attacker.get("/api/tasks")
        cookie = f"imgproc_session={attacker.cookies['imgproc_session']}"
    poller.start()
    try:
        endings = slow_uploads_in_a_process(
            stack.port, cookie=cookie, clients=clients, seconds=seconds, last_start=BODY_GRACE + 2
        )
    finally:
        poller.stop.set()
        poller.join(timeout=10)
    p95 = _p95(poller.latencies_ms)
    refused = sum(n for status, n in poller.outcomes.items() if status.startswith("5") or status == "timeout")
    record(
        "clients",
        name=f"{clients} slow uploads, one cookie, {seconds:.0f} s",
        status_requests=sum(poller.outcomes.values()),
        status_p95_ms=p95,
        status_max_ms=round(max(poller.latencies_ms), 1),
        status_refused=refused,
        slow_endings=dict(endings),
    )
    assert poller.outcomes["200"] == sum(poller.outcomes.values()), (poller.outcomes, stack.diagnostics())
    # The target is p95 <= 100 ms, which `make reliability` reports against (this row);
    # asserted here is what the design guarantees on any machine: nothing waits for the pool
    # (a 5 s pool wait, 30 s on SQLite, was every answer's lot before).
    assert p95 <= 1000, poller.latencies_ms
    # The slow senders were dropped (408) or refused a slot (503), none held for the whole run.
    assert endings["408"] > 0 and endings["503"] > 0, endings
    assert endings["held"] == 0, endings


def test_header_flood_keeps_memory_bounded(stack):
    connections, size = 20, 16 * 2**20
    assert stack.api is not None

    async def flood() -> list:
        until = time.monotonic() + 30
        return await asyncio.gather(*(oversized_head(stack.port, until=until, size=size) for _ in range(connections)))

    with RssPeak(stack.api.pid) as rss:
        endings = asyncio.run(flood())
    outcomes = Counter(e.outcome for e in endings)
    record(
        "clients",
        name=f"header flood: {connections} x {size // 2**20} MiB unfinished heads",
        rss_before_mb=round(rss.before / 2**20, 1),
        rss_growth_mb=rss.growth_mb,
        most_accepted_kib=max(e.sent for e in endings) // 1024,
        slow_endings=dict(outcomes),
    )
    # Each got its 431, or lost it to the reset of a close with its own bytes still unread.
    assert set(outcomes) <= {"431", "closed"}, outcomes
    assert max(e.sent for e in endings) < size
    assert rss.growth_mb <= 50
    assert httpx.get(stack.url + "/livez", timeout=5).status_code == 200
    # One unfinished head over the cap, all of it read by the server: the 431 arrives.
    with _raw_request(stack.port, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000) as sock:
        answer = _answer(sock)
    assert status_of(answer) == 431, answer


def test_dripping_heads_are_closed_by_the_header_deadline(stack):
    connections = 150

    async def drip() -> list:
        until = time.monotonic() + HEADER_TIMEOUT + 10
        return await asyncio.gather(*(dripping_head(stack.port, until=until) for _ in range(connections)))

    endings = asyncio.run(drip())
    outcomes = Counter(e.outcome for e in endings)
    slowest = max(e.seconds for e in endings)
    record(
        "clients",
        name=f"{connections} heads dripping a byte a second",
        header_timeout_s=HEADER_TIMEOUT,
        last_closed_s=round(slowest, 1),
        slow_endings=dict(outcomes),
    )
    assert outcomes == {"408": connections}, outcomes
    assert slowest <= HEADER_TIMEOUT + 2


def _raw_request(port: int, head: bytes, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(head)
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionError, TimeoutError):
        pass
    return data


def test_a_slow_body_gets_408_and_is_dropped(stack):
    cookie = _cookie(stack)
    head = (
        "POST /api/newTask HTTP/1.1\r\nHost: x\r\n"
        f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 100000\r\n\r\n"
    )
    started = time.monotonic()
    with _raw_request(stack.port, head.encode()) as sock:
        sock.sendall(b"--xyz\r\n")  # then nothing more
        answer = _answer(sock)  # read until the server closes
    seconds = time.monotonic() - started
    record("clients", name="slow body: time to 408 and close", body_grace_s=BODY_GRACE, seconds=round(seconds, 1))
    assert status_of(answer) == 408, answer
    assert b"too slowly" in answer
    assert BODY_GRACE - 0.5 <= seconds <= BODY_GRACE + 3


def test_an_oversized_content_length_is_refused_before_the_body(stack):
    head = (
        "POST /api/newTask HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: 10000000000\r\n\r\n"
    )
    started = time.monotonic()
    with _raw_request(stack.port, head.encode()) as sock:
        answer = _answer(sock)  # not a byte of the body sent
    seconds = time.monotonic() - started
    record("clients", name="Content-Length 10 GB: time to 413, no body sent", seconds=round(seconds, 3))
    assert status_of(answer) == 413, answer
    assert seconds < 2


def test_a_chunked_body_over_the_limit_is_cut_at_the_limit(stack):
    head = (
        "POST /api/newTask HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = 64 * 1024
    chunk = f"{piece:x}\r\n".encode() + b"a" * piece + b"\r\n"
    # A valid start of the file part: what follows is the file's data, refused only for its size.
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    sent = 0
    answer = b""
    with _raw_request(stack.port, head.encode(), timeout=5) as sock:
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        try:
            while sent < 64 * MAX_UPLOAD:  # bounded: 64 MiB at most
                sock.sendall(chunk)
                sent += piece
        except (ConnectionError, TimeoutError):
            pass  # the server stopped reading and closed
        answer = _answer(sock)
    record("clients", name="chunked body over a 1 MiB limit: bytes sent until cut", sent_kib=sent // 1024)
    assert sent < 64 * MAX_UPLOAD, "the server kept reading"
    # Whatever the client got to send beyond the limit sat in the kernel's socket buffers.
    assert sent <= MAX_UPLOAD + 64 * 1024 + 8 * 2**20
    assert status_of(answer) in (413, None), answer  # the 413, or a reset that raced it


def _cookie(stack: ServiceStack) -> str:
    with stack.client() as client:
        client.get("/api/tasks")
        return f"imgproc_session={client.cookies['imgproc_session']}"


def _upload_head(cookie: str, length: int = 500_000) -> bytes:
    return (
        "POST /api/newTask HTTP/1.1\r\nHost: x\r\n"
        f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


# More than the kernel's socket buffers hold on loopback, so a reset reaches the writer.
PROXIED_BODY = 8 * 2**20


def _write_body(sock: socket.socket, length: int) -> int:
    """Writes ``length`` bytes at a proxy's pace (256 KiB every 10 ms); returns how many went
    out before the connection was reset."""
    piece = b"a" * (256 * 1024)
    written = 0
    try:
        while written < length:
            written += sock.send(piece[: length - written])
            time.sleep(0.01)
    except ConnectionError:
        pass
    return written


def test_limits_refuse_before_a_byte_of_the_body_is_read(tmp_path):
    """The rate limit, the pending cap and the upload slots answer on the head alone."""
    env = {
        **embedded_env(tmp_path / "data"),
        "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "2",
        "IMGPROC_MAX_PENDING_TASKS_PER_USER": "1",
        "IMGPROC_MAX_CONCURRENT_UPLOADS": "1",
    }
    with running_stack(env, tmp_path / "logs", workers=0) as stack:
        with stack.client() as client:
            upload_accepted(client, small_jpeg())  # one unfinished task: the cap is reached
            cookie = f"imgproc_session={client.cookies['imgproc_session']}"
        with _raw_request(stack.port, _upload_head(cookie)) as sock:
            pending = _answer(sock)
        with _raw_request(stack.port, _upload_head(cookie)) as sock:
            rate = _answer(sock)
        # A proxy (Traefik, nginx) writes the whole body before it reads the answer: the refusal
        # must still reach it, not a connection reset that it turns into a 502 (app.server).
        with _raw_request(stack.port, _upload_head(cookie, length=PROXIED_BODY)) as sock:
            written = _write_body(sock, PROXIED_BODY)
            proxied = _answer(sock)
        # One upload in flight (a slow one of another user) takes the only slot.
        with _raw_request(stack.port, _upload_head(_cookie(stack))) as holder:
            holder.sendall(b"--xyz\r\n")
            time.sleep(0.5)
            with _raw_request(stack.port, _upload_head(_cookie(stack))) as sock:
                busy = _answer(sock)
    assert status_of(pending) == 429 and b"unfinished tasks" in pending, pending
    assert status_of(rate) == 429 and b"rate limit" in rate, rate
    assert status_of(busy) == 503 and b"retry-after: 2" in busy.lower(), busy
    assert written == PROXIED_BODY, f"reset after {written} of {PROXIED_BODY} bytes"
    assert status_of(proxied) == 429 and b"rate limit" in proxied, proxied
