"""Load on loopback: N uploads from U cookie users (bounded asyncio, one httpx.AsyncClient
per user, one upload in flight per user) against the real API + W worker processes on a
PostgreSQL and a Redis started here for the run.

    python -m bench.loadtest [--uploads 1000] [--users 20] [--workers 2] [--concurrency 1]
                             [--size 1024x768] [--json FILE]

Prints uploads/s, upload latency p50/p95/p99, upload-to-completed latency p50/p95 (client send
time to the task's server-side completion time; one host, one clock) and error counts by
status. Fails (exit 1) unless every accepted task completed, there is exactly one result
file per completed task, and each user's GET /api/tasks lists exactly that user's tasks.
Per-user limits are raised for the run: the service's throughput is under test, not its
rate limiter."""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("completed", "failed")
UNLIMITED = {
    "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "1000000",
    "IMGPROC_MAX_PENDING_TASKS_PER_USER": "1000000",
    "IMGPROC_NEW_USERS_PER_MINUTE_PER_IP": "1000000",
}


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class User:
    client: httpx.AsyncClient
    sent_at: dict[int, float] = field(default_factory=dict)  # task id -> wall-clock send time
    final: dict[int, dict] = field(default_factory=dict)  # task id -> its TaskPublic when terminal
    listed: set[int] = field(default_factory=set)


async def _upload_loop(
    user: User, count: int, data: bytes, latencies: list[float], errors: collections.Counter[str]
) -> None:
    for _ in range(count):
        sent_wall, sent = time.time(), time.perf_counter()
        try:
            response = await user.client.post("/api/newTask", files={"file": ("load.jpg", data, "image/jpeg")})
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
            continue
        latencies.append((time.perf_counter() - sent) * 1000)
        if response.status_code == 200:
            user.sent_at[response.json()["task_id"]] = sent_wall
        else:
            errors[str(response.status_code)] += 1


async def _list_all(user: User) -> list[dict]:
    items: list[dict] = []
    while True:
        response = await user.client.get("/api/tasks", params={"limit": 100, "offset": len(items)})
        response.raise_for_status()
        page = response.json()
        items.extend(page["items"])
        if not page["items"] or len(items) >= page["total"]:
            return items


async def _await_completion(users: list[User], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Only users still waiting, once a second: the poll must not become the load.
        waiting = [u for u in users if not set(u.sent_at) <= set(u.final)]
        pages = await asyncio.gather(*(_list_all(u) for u in waiting), return_exceptions=True)
        for user, items in zip(waiting, pages, strict=True):
            if isinstance(items, BaseException):
                continue
            user.listed = {item["id"] for item in items}
            for item in items:
                if item["status"] in TERMINAL:
                    user.final[item["id"]] = item
        if all(set(u.sent_at) <= set(u.final) for u in users):
            break
        await asyncio.sleep(1.0)
    # The isolation check reads every user's full list once more, after the last completion.
    pages = await asyncio.gather(*(_list_all(u) for u in users))
    for user, items in zip(users, pages, strict=True):
        user.listed = {item["id"] for item in items}


def _completed_at(item: dict) -> float:
    return datetime.fromisoformat(item["updated_at"]).timestamp()


async def drive(base_url: str, *, uploads: int, users: int, data: bytes, timeout: float = 600) -> dict[str, Any]:
    """The load itself, against any running service; returns the figures (no assertions)."""
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    people = [User(httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits)) for _ in range(users)]
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    try:
        await asyncio.gather(*(u.client.get("/api/tasks") for u in people))  # one cookie each
        shares = [uploads // users + (1 if i < uploads % users else 0) for i in range(users)]
        started = time.perf_counter()
        await asyncio.gather(
            *(_upload_loop(u, n, data, latencies, errors) for u, n in zip(people, shares, strict=True))
        )
        upload_seconds = time.perf_counter() - started
        await _await_completion(people, timeout)
        drained_seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(u.client.aclose() for u in people))

    accepted = sum(len(u.sent_at) for u in people)
    finals = [u.final[i] for u in people for i in u.sent_at if i in u.final]
    completed = [f for f in finals if f["status"] == "completed"]
    to_completed = [
        (_completed_at(u.final[i]) - sent) * 1000
        for u in people
        for i, sent in u.sent_at.items()
        if i in u.final and u.final[i]["status"] == "completed"
    ]
    return {
        "uploads": uploads,
        "users": users,
        "accepted": accepted,
        "completed": len(completed),
        "failed": len(finals) - len(completed),
        "lost": accepted - len(finals),
        "completed_ids": sorted(f["id"] for f in completed),
        "uploads_per_s": round(uploads / upload_seconds, 1),
        "tasks_per_s": round(len(completed) / drained_seconds, 1),
        "upload_p50_ms": round(percentile(latencies, 50), 1),
        "upload_p95_ms": round(percentile(latencies, 95), 1),
        "upload_p99_ms": round(percentile(latencies, 99), 1),
        "complete_p50_ms": round(percentile(to_completed, 50), 1),
        "complete_p95_ms": round(percentile(to_completed, 95), 1),
        "errors": dict(errors),
        # Each user lists exactly the tasks it created: nobody sees anyone else's.
        "isolation_ok": all(u.listed == set(u.sent_at) for u in people),
        "seconds": round(drained_seconds, 1),
    }


def check(figures: dict[str, Any], storage_dir: Path) -> dict[str, Any]:
    """Adds the duplicate count (result files beyond one per completed task) and returns the
    list of failed expectations (empty when the run is clean)."""
    files = {p.stem for p in (storage_dir / "results").glob("*.jpg")}
    completed = {str(i) for i in figures.pop("completed_ids")}
    figures["duplicated"] = len(files - completed) + max(0, len(files & completed) - len(completed))
    problems = []
    if figures["accepted"] != figures["uploads"]:
        problems.append(f"{figures['uploads'] - figures['accepted']} upload(s) refused: {figures['errors']}")
    if figures["lost"]:
        problems.append(f"{figures['lost']} accepted task(s) never finished")
    if figures["completed"] != figures["accepted"]:
        problems.append(f"{figures['accepted'] - figures['completed']} task(s) did not complete")
    if figures["duplicated"] or files != completed:
        problems.append(f"result files do not match completed tasks ({len(files)} vs {len(completed)})")
    if not figures["isolation_ok"]:
        problems.append("a user's task list differs from the tasks that user created")
    return problems


def print_figures(figures: dict[str, Any], workers: int, concurrency: int) -> None:
    print(
        f"load: {figures['uploads']} uploads from {figures['users']} users, "
        f"{workers} worker(s) x concurrency {concurrency}"
    )
    print(
        f"  accepted {figures['accepted']}, completed {figures['completed']}, failed {figures['failed']}, "
        f"lost {figures['lost']}, duplicated {figures.get('duplicated', '?')}, "
        f"isolation {'ok' if figures['isolation_ok'] else 'BROKEN'}"
    )
    print(f"  uploads/s {figures['uploads_per_s']}   tasks/s (to drained) {figures['tasks_per_s']}")
    print(
        f"  upload latency ms: p50 {figures['upload_p50_ms']}  p95 {figures['upload_p95_ms']}  "
        f"p99 {figures['upload_p99_ms']}"
    )
    print(f"  upload-to-completed ms: p50 {figures['complete_p50_ms']}  p95 {figures['complete_p95_ms']}")
    print(f"  errors by status: {figures['errors'] or 'none'}   total {figures['seconds']} s")


def main(argv: list[str] | None = None) -> int:
    from tests.fixtures.postgres import start_postgres
    from tests.fixtures.redis import start_redis
    from tests.fixtures.services import running_stack, server_env
    from tests.support import images

    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    parser.add_argument("--size", default="1024x768", help="the uploaded JPEG's WxH")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for completion")
    parser.add_argument("--json", help="also append the figures as a JSON line (tests/support/report.py)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    data = images.jpeg(width, height)

    base = Path(tempfile.mkdtemp(prefix="imgproc-load-"))
    pg_base = Path(tempfile.mkdtemp(prefix="imgproc-pg-"))  # its own: chowned to "postgres" when root
    postgres = start_postgres(pg_base)
    redis = start_redis()
    try:
        env = server_env(postgres.create_database("load"), redis.url, base / "data")
        env.update(UNLIMITED, IMGPROC_WORKER_CONCURRENCY=str(args.concurrency), IMGPROC_LOG_LEVEL="WARNING")
        with running_stack(env, base / "logs", workers=args.workers) as stack:
            figures = asyncio.run(
                drive(stack.url, uploads=args.uploads, users=args.users, data=data, timeout=args.timeout)
            )
            problems = check(figures, stack.storage_dir)
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(redis.directory, ignore_errors=True)
        shutil.rmtree(pg_base, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    figures.update(workers=args.workers, concurrency=args.concurrency)
    print_figures(figures, args.workers, args.concurrency)
    if args.json:
        line = json.dumps({"kind": "load", **figures}, sort_keys=True)
        with open(args.json, "a") as out:
            out.write(line + "\n")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
