"""Where the API's CPU goes under load: py-spy samples the API process while bench_peers' client
runs, and every sample is attributed to a request type and to its innermost functions.

    python -m bench.profile_api [--mode embedded|servers] [--input 12mp|1080p] [--images 60]

Needs py-spy (the ``bench`` extra: ``pip install -e '.[bench]'``; root or ptrace permission).
Each request type's share of the busy samples is scaled to the API process's CPU per image
measured from /proc (as bench_peers measures it).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.bench_peers import STACK_ENV, ImgprocTarget, imgproc_embedded, imgproc_servers, run_load
from bench.bench_pipeline import photo_like
from tests.support.images import encode

# First match wins: (request type, substrings of a frame "function (file:line)").
REQUEST_TYPES: list[tuple[str, tuple[str, ...]]] = [
    ("upload: image check (inspect)", ("app/imaging/",)),
    ("upload: storing the original", ("app/storage/",)),
    ("upload: enqueue (Celery/kombu publish)", ("app/tasks/queueing.py",)),
    ("upload: multipart parsing", ("formparsers.py", "multipart/")),
    ("upload: rest of the route (DB, limits)", ("new_task (",)),
    ("webhook", ("task_complete (", "webhook.py")),
    # The status read runs on a pool thread, whose stack has none of the route's own frames.
    (
        "status (isReady, tasks/{id})",
        ("is_ready_status (", "get_task (", "_owned_task_for_status", "app/api/outcome_waiters.py"),
    ),
    ("result download", ("get_result (", "responses.py")),
    ("identity (cookie -> user)", ("get_current_user (",)),
    ("requeue of lost messages", ("_requeue_stale_forever", "requeue.py")),
]


# Leaves that are a thread waiting, which py-spy's idle detection does not always drop (a worker
# thread of the thread pool parked on its condition variable).
WAITING_LEAVES = ("Condition.wait (", "Event.wait (", "Lock.acquire (")


def request_type(stack: str) -> str:
    if any(stack.rsplit(";", 1)[-1].startswith(leaf) for leaf in WAITING_LEAVES):
        return "(waiting: not CPU)"
    for name, needles in REQUEST_TYPES:
        if any(needle in stack for needle in needles):
            return name
    return "other (uvicorn, asyncio, middleware, routing)"


def leaf(stack: str) -> str:
    frame = stack.rsplit(";", 1)[-1]
    return frame.split(" (", 1)[0] + " (" + frame.split(" (", 1)[-1].split("/")[-1] if " (" in frame else frame


def summarise(raw: Path, images: int, api_cpu_ms: float) -> None:
    """Shares of the non-waiting samples, scaled to the API's CPU per image measured from /proc
    (threads contending for the GIL or the cores are sampled as busy, so raw sample counts
    overstate CPU)."""
    by_type: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        by_type[request_type(stack)] += int(count)
        by_leaf[leaf(stack)] += int(count)
    waiting = by_type.pop("(waiting: not CPU)", 0)
    total = sum(by_type.values())
    per_sample = api_cpu_ms / max(total, 1)
    print(f"\n{total} busy samples ({waiting} waiting ones left out), scaled to {api_cpu_ms:.1f} API CPU ms/image")
    print(f"{'request type':<46}{'share':>8}{'CPU ms/image':>14}")
    for name, count in by_type.most_common():
        print(f"{name:<46}{count / total:>8.0%}{count * per_sample:>14.2f}")
    print(f"\n{'top functions (self)':<70}{'share':>8}{'ms/image':>10}")
    for name, count in by_leaf.most_common(16):
        if not name.startswith(WAITING_LEAVES):
            print(f"{name[:70]:<70}{count / total:>8.0%}{count * per_sample:>10.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "servers"], default="embedded")
    parser.add_argument("--input", choices=["12mp", "1080p"], default="12mp")
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=int, default=250)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        parser.error("py-spy not found: pip install py-spy")
    size = (4000, 3000) if args.input == "12mp" else (1920, 1080)
    data = encode(photo_like(*size, seed=12), "JPEG", quality=90)
    workdir = Path(tempfile.mkdtemp(prefix="imgproc-profile-"))
    raw = workdir / "api.txt"
    start = imgproc_embedded if args.mode == "embedded" else imgproc_servers
    try:
        # The default configuration (one preset), as bench_peers' "single" row.
        with start(workdir, {"single": STACK_ENV["single"]}) as stacks:
            stack, roles = stacks["single"]
            assert stack.api is not None
            sampler = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(stack.api.pid),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--nonblocking",
                    "--full-filenames",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                result = run_load(
                    ImgprocTarget(stack, data, roles), images=args.images, concurrency=args.concurrency, time_limit=180
                )
            finally:
                sampler.send_signal(signal.SIGINT)
                sampler.wait(timeout=60)
        api_cpu_ms = result.cpu.get("API", 0) / max(result.images, 1) * 1000
        print(
            f"{args.mode}, {args.input}: {result.images} images, {result.rate:.1f} images/s, "
            f"API {api_cpu_ms:.1f} CPU ms/image (from /proc), "
            f"{result.status_requests / max(result.images, 1):.2f} status requests/image"
        )
        summarise(raw, result.images, api_cpu_ms)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
