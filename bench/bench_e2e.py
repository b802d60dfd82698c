"""End-to-end figures: uploads through API + one worker process (concurrency 1), in
embedded mode and on PostgreSQL + Redis, against the pure pipeline on the same input.

    python -m bench.bench_e2e [--uploads 60]

Throughput: the queue is filled with the worker stopped, then one warm worker drains it;
tasks/s is compared with the pure pipeline's images/s in this process (the difference is
what the queue, the database, the file writes and the webhook cost). Latency: uploads at a
steady pace below capacity, upload-to-completed p50/p95. Servers run on loopback only."""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.bench_pipeline import photo_like, pipeline_images_per_second
from tests.fixtures.postgres import start_postgres
from tests.fixtures.redis import start_redis
from tests.fixtures.services import ServiceStack, embedded_env, running_stack, server_env, wait_for_terminal
from tests.utils.images import encode


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def upload(client, data: bytes) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/api/newTask", files={"file": ("b.jpg", data, "image/jpeg")})
    response.raise_for_status()
    return response.json()["task_id"]


def wait_for_files(directory: Path, count: int, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if directory.is_dir() and sum(1 for _ in directory.glob("*.jpg")) >= count:
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(f"fewer than {count} results in {directory}")


def drain_rate(stack: ServiceStack, data: bytes, uploads: int) -> tuple[float, float]:
    """Tasks/s of one warm worker draining a full queue (the first task warms it up), and the
    median pipeline time the worker itself measured (contention from the API, the database and
    the broker on the same cores shows up there)."""
    results = stack.storage_dir / "results"
    with stack.client() as client:
        ids = [upload(client, data) for _ in range(uploads + 1)]
        stack.start_worker("--concurrency=1")
        first = wait_for_files(results, 1)
        last = wait_for_files(results, uploads + 1)
        statuses = {wait_for_terminal(client, task_id)["status"] for task_id in ids}
        assert statuses == {"completed"}, statuses
        worker_ms = [client.get(f"/api/tasks/{task_id}").json()["metadata"]["processing_ms"] for task_id in ids[1:]]
    return uploads / (last - first), statistics.median(worker_ms)


def steady_latency(stack: ServiceStack, data: bytes, uploads: int, interval: float) -> list[float]:
    """Upload-to-completed seconds at a pace the worker keeps up with."""
    sent: dict[int, float] = {}
    with stack.client() as client:
        for _ in range(uploads):
            started = time.time()
            sent[upload(client, data)] = started
            time.sleep(interval)
        latencies = []
        for task_id, started in sent.items():
            task = wait_for_terminal(client, task_id)
            finished = datetime.fromisoformat(client.get(f"/api/tasks/{task_id}").json()["updated_at"]).timestamp()
            assert task["status"] == "completed"
            latencies.append(finished - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=60)
    args = parser.parse_args()
    data = encode(photo_like(1920, 1080, seed=7), "JPEG", quality=90)
    pure = pipeline_images_per_second(data, runs=30)
    print(f"input: 1920x1080 JPEG, {len(data)} bytes; {args.uploads} uploads per mode; one worker, concurrency 1")
    print(f"pure pipeline: {pure:.1f} images/s ({1000 / pure:.1f} ms/image, this process)\n")

    workdir = Path(tempfile.mkdtemp(prefix="imgproc-bench-"))
    postgres = start_postgres()
    redis = start_redis()
    limits = {
        "IMGPROC_WORKER_CONCURRENCY": "1",
        "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
        "IMGPROC_MAX_PENDING_TASKS_PER_USER": "100000",
        "IMGPROC_LOG_LEVEL": "WARNING",
    }
    rows = []
    try:
        modes = {
            "embedded (SQLite)": embedded_env(workdir / "embedded"),
            "PostgreSQL + Redis": server_env(postgres.create_database("bench"), redis.url, workdir / "server"),
        }
        for index, (name, env) in enumerate(modes.items()):
            with running_stack({**env, **limits}, workdir / f"logs-{index}", workers=0) as stack:
                rate, worker_ms = drain_rate(stack, data, args.uploads)
                latencies = steady_latency(stack, data, uploads=30, interval=2 / pure)
            rows.append((name, rate, worker_ms, percentile(latencies, 50), percentile(latencies, 95)))
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(postgres.data_dir.parent, ignore_errors=True)
        shutil.rmtree(redis.directory, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{'mode':<22}{'tasks/s':>9}{'overhead':>10}{'pipeline ms in worker':>23}{'p50 ms':>9}{'p95 ms':>9}")
    for name, rate, worker_ms, p50, p95 in rows:
        print(
            f"{name:<22}{rate:>9.1f}{1 - rate / pure:>10.0%}{worker_ms:>23.1f}{p50 * 1000:>9.0f}{p95 * 1000:>9.0f}"
        )
    print("\ntarget: queue + database overhead under 15% of the pure pipeline")


if __name__ == "__main__":
    main()
