"""End-to-end figures: N uploads through API + one worker process (concurrency 1), in
embedded mode and on PostgreSQL + Redis, against the pure pipeline on the same input.

    python -m bench.bench_e2e [--uploads 60]

Prints tasks/s per worker process, the pure pipeline's images/s, the queue + database
overhead, and p50/p95 upload-to-completed latency. Servers run on loopback only."""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_pipeline import pipeline_images_per_second
from tests.fixtures.postgres import start_postgres
from tests.fixtures.redis import start_redis
from tests.fixtures.services import embedded_env, running_stack, server_env
from tests.utils import images


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_burst(stack, data: bytes, uploads: int) -> dict[str, float]:
    """Uploads everything first, then watches completions: throughput is the worker's."""
    submitted: dict[int, float] = {}
    done: dict[int, float] = {}
    with stack.client() as client:
        client.get("/api/tasks")  # take a cookie before the burst
        for _ in range(uploads):
            response = client.post("/api/newTask", files={"file": ("b.jpg", data, "image/jpeg")})
            response.raise_for_status()
            submitted[response.json()["task_id"]] = time.perf_counter()
        first_submit = min(submitted.values())
        deadline = time.monotonic() + 300
        while len(done) < uploads and time.monotonic() < deadline:
            page = client.get("/api/tasks", params={"limit": 100}).json()["items"]
            now = time.perf_counter()
            for task in page:
                if task["status"] in ("completed", "failed") and task["id"] not in done:
                    assert task["status"] == "completed", task
                    done[task["id"]] = now
            time.sleep(0.02)
    if len(done) < uploads:
        raise RuntimeError(f"only {len(done)}/{uploads} completed")
    latencies = [done[i] - submitted[i] for i in submitted]
    span = max(done.values()) - first_submit
    return {
        "tasks_per_s": uploads / span,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=60)
    args = parser.parse_args()
    data = images.jpeg(1920, 1080)
    pure = pipeline_images_per_second(data, runs=30)
    print(f"input: 1920x1080 JPEG, {len(data)} bytes; uploads per mode: {args.uploads}; worker concurrency 1")
    print(f"pure pipeline: {pure:.1f} images/s (one process)\n")

    workdir = Path(tempfile.mkdtemp(prefix="imgproc-bench-"))
    postgres = start_postgres(workdir / "pg")
    redis = start_redis()
    rows = []
    try:
        modes = {
            "embedded (SQLite)": embedded_env(workdir / "embedded"),
            "PostgreSQL + Redis": server_env(
                postgres.create_database("bench"), redis.url, workdir / "server"
            ),
        }
        for name, env in modes.items():
            env = {**env, "IMGPROC_WORKER_CONCURRENCY": "1", "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
                   "IMGPROC_MAX_PENDING_TASKS_PER_USER": "100000", "IMGPROC_LOG_LEVEL": "WARNING"}
            with running_stack(env, workdir / f"logs-{len(rows)}") as stack:
                run_burst(stack, data, 5)  # warm-up: worker pool forked, connections open
                rows.append((name, run_burst(stack, data, args.uploads)))
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{'mode':<22}{'tasks/s':>9}{'overhead':>10}{'p50 s':>8}{'p95 s':>8}")
    for name, row in rows:
        overhead = 1 - row["tasks_per_s"] / pure
        print(f"{name:<22}{row['tasks_per_s']:>9.1f}{overhead:>9.0%}{row['p50']:>8.2f}{row['p95']:>8.2f}")
    print("\ntarget: queue + database overhead under 15% of the pure pipeline")


if __name__ == "__main__":
    main()
