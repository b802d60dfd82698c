"""RequestBodyGuard on its own, as ASGI: size, rate, and the connection closed on an answer sent
before the body was read (the real server's behaviour is in
tests/integration/reliability/test_hostile_clients.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.api.middleware import BODY_TOO_SLOW, RequestBodyGuard


def scope(headers: dict[str, str], method: str = "POST") -> dict:
    return {
        "type": "http",
        "method": method,
        "path": "/api/newTask",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


def guard(app, **limits) -> RequestBodyGuard:  # type: ignore[no-untyped-def]
    options = {"max_bytes": 100, "advertised_limit": 90, "min_bytes_per_second": 1000, "grace_seconds": 5} | limits
    return RequestBodyGuard(app, **options)


def run(middleware: RequestBodyGuard, scope_: dict, messages: list[dict], *, stall: bool = False):  # type: ignore[no-untyped-def]
    """The messages sent; `messages` are received in turn, then (stall) nothing ever again."""
    sent: list[dict] = []
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(middleware(scope_, receive, send))
    return sent


def status_and_headers(sent: list[dict]) -> tuple[int, dict[bytes, bytes]]:
    start = sent[0]
    return start["status"], dict(start["headers"])


async def reads_all(scope_, receive, send) -> None:  # type: ignore[no-untyped-def]
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def answers_at_once(scope_, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 429, "headers": [(b"retry-after", b"5")]})
    await send({"type": "http.response.body", "body": b"{}"})


def never_called(*_):  # type: ignore[no-untyped-def]
    raise AssertionError("the app ran")


def test_a_declared_size_over_the_limit_is_413_before_the_app_reads_anything():
    sent = run(guard(never_called), scope({"content-length": "101"}), [])
    status, headers = status_and_headers(sent)
    assert status == 413 and headers[b"connection"] == b"close"
    assert json.loads(sent[1]["body"]) == {"detail": "File too large: the limit is 90 bytes."}


def test_a_chunked_body_over_the_limit_is_413_once_crossed():
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 3
    sent = run(guard(reads_all), scope({"transfer-encoding": "chunked"}), chunks)
    status, headers = status_and_headers(sent)
    assert status == 413 and headers[b"connection"] == b"close"
    assert len(sent) == 2  # the app's own answer was dropped


def test_a_body_that_stops_arriving_gets_408_after_the_grace():
    sent = run(guard(reads_all, grace_seconds=0.2), scope({"content-length": "50"}), [], stall=True)
    status, headers = status_and_headers(sent)
    assert status == 408 and headers[b"connection"] == b"close"
    assert json.loads(sent[1]["body"]) == {"detail": BODY_TOO_SLOW}
    assert len(sent) == 2  # the app, told the client left, answered nothing more


def test_the_deadline_moves_with_the_bytes_received():
    # 10 bytes at 100 B/s buy 0.1 s beyond the 0.1 s grace; the body then stalls.
    middleware = guard(reads_all, grace_seconds=0.1, min_bytes_per_second=100)
    messages = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        sent: list[dict] = []
        queue = list(messages)

        async def receive() -> dict:
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)
            return {}

        async def send(message: dict) -> None:
            sent.append(message)

        loop.run_until_complete(middleware(scope({"content-length": "50"}), receive, send))
        elapsed = loop.time() - started
    finally:
        loop.close()
    assert sent[0]["status"] == 408
    assert 0.18 <= elapsed < 1.0


def test_an_answer_before_the_body_was_read_closes_the_connection():
    sent = run(guard(answers_at_once), scope({"content-length": "50"}), [])
    status, headers = status_and_headers(sent)
    assert status == 429 and headers[b"connection"] == b"close"


@pytest.mark.parametrize("headers", [{"content-length": "50"}, {}], ids=["body-read", "no-body"])
def test_an_answer_after_the_whole_body_keeps_the_connection(headers):
    body = [{"type": "http.request", "body": b"x" * 50, "more_body": False}]
    sent = run(guard(reads_all), scope(headers), body)
    status, answer_headers = status_and_headers(sent)
    assert status == 200 and b"connection" not in answer_headers


def test_safe_methods_pass_untouched():
    sent = run(guard(answers_at_once), scope({"content-length": "500"}, method="GET"), [])
    status, headers = status_and_headers(sent)
    assert status == 429 and b"connection" not in headers
