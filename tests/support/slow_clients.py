"""Hostile and slow HTTP clients on raw sockets (an HTTP library would finish the request):
uploads that drip their body, heads that drip or never end, and the API's memory meanwhile.

Every client here is bounded in time by its caller and talks to loopback only.

- `slow_upload(port, ...)`: sends a request head, then the body a byte at a time; the answer's
  status, or "held" if the server neither answered nor closed before `until`.
- `slow_uploads_in_a_process(port, ...)`: many of those, each reconnecting a second after the
  server ends its upload, run in a child process (so that they do not share the GIL with the
  test's own well-behaved client, whose latency is being measured); how they ended.
- `dripping_head(port, ...)`: sends a request head a byte every `interval`; how it ended.
- `oversized_head(port, ...)`: sends an unfinished head of up to `size` bytes; how it ended and
  how much the server took.
- `rss_bytes(pid)`: resident memory of a process, from /proc.
- `RssPeak`: samples a process's RSS in a thread, keeps the peak.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass

_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})")


def status_of(data: bytes) -> int | None:
    match = _STATUS.match(data)
    return int(match.group(1)) if match else None


@dataclass
class Ending:
    outcome: str  # "431", "408", "503", ...: the status answered; "closed": closed without one; "held"
    seconds: float  # from the first byte sent to the ending
    sent: int  # bytes sent


async def _watch(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes (a few KiB at most is kept)."""
    data = b""
    while chunk := await reader.read(4096):
        data = (data + chunk)[:8192]
    return data


async def _run(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, pieces, interval: float, until: float):  # type: ignore[no-untyped-def]
    """Writes `pieces` one per `interval` until the server answers or closes, or `until`."""
    started = time.monotonic()
    watcher = asyncio.ensure_future(_watch(reader))
    sent = 0
    try:
        for piece in pieces:
            if watcher.done() or time.monotonic() >= until:
                break
            try:
                writer.write(piece)
                await writer.drain()
            except (ConnectionError, OSError):
                break
            sent += len(piece)
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
                await asyncio.wait_for(asyncio.shield(watcher), interval)
        if not watcher.done():
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, OSError):
                await asyncio.wait_for(asyncio.shield(watcher), max(0.0, until - time.monotonic()))
        if not watcher.done():
            return Ending("held", time.monotonic() - started, sent)
        try:
            data = watcher.result()
        except (ConnectionError, OSError):
            data = b""
        status = status_of(data)
        return Ending(str(status) if status else "closed", time.monotonic() - started, sent)
    finally:
        watcher.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def slow_upload(
    port: int, *, cookie: str, until: float, interval: float = 1.0, declared: int = 1_000_000
) -> Ending:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /api/newTask HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {cookie}\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    # A valid start, so the part's data is what drips (the parser refuses nothing yet).
    part = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    writer.write(head + part)
    return await _run(writer, reader, (b"a" for _ in range(declared)), interval, until)


async def _slow_uploads(port: int, cookie: str, clients: int, seconds: float, last_start: float) -> dict[str, int]:
    until = time.monotonic() + seconds
    endings: Counter[str] = Counter()

    async def one() -> None:
        # No new upload in the last `last_start` seconds: one still open at the end ("held") was
        # then open longer than that.
        while time.monotonic() < until - last_start:
            try:
                ending = await slow_upload(port, cookie=cookie, until=until)
            except OSError:
                endings["connect failed"] += 1
                await asyncio.sleep(1)
                continue
            endings[ending.outcome] += 1
            if ending.outcome == "held":
                return
            await asyncio.sleep(1)

    await asyncio.gather(*(one() for _ in range(clients)))
    return dict(endings)


def _slow_uploads_child(queue, *args) -> None:  # type: ignore[no-untyped-def]
    queue.put(asyncio.run(_slow_uploads(*args)))


def slow_uploads_in_a_process(
    port: int, *, cookie: str, clients: int, seconds: float, last_start: float
) -> Counter[str]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_slow_uploads_child, args=(queue, port, cookie, clients, seconds, last_start))
    child.start()
    try:
        return Counter(queue.get(timeout=seconds + 60))
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()


async def dripping_head(port: int, *, until: float, interval: float = 1.0) -> Ending:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Drip: " + b"a" * 10_000
    return await _run(writer, reader, (head[i : i + 1] for i in range(len(head))), interval, until)


async def oversized_head(port: int, *, until: float, size: int, piece: int = 64 * 1024) -> Ending:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: "
    pieces = [start] + [b"a" * piece for _ in range(size // piece)]
    return await _run(writer, reader, pieces, 0.001, until)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class RssPeak:
    """The peak RSS of `pid` while the block runs, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return round((self.peak - self.before) / 2**20, 1)
