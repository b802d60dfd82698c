"""End-to-end figures: uploads through API + one worker process (concurrency 1), in
embedded mode and on PostgreSQL + Redis with either storage backend (the file system, or a
real S3-compatible store: SeaweedFS on loopback), against the pure pipeline on the same input.

    python -m bench.bench_e2e [--uploads 60]

Throughput: the queue is filled with the worker stopped, then one warm worker drains it
(timed by the tasks' completion times, the same clock on both backends); tasks/s is compared
with the pure pipeline's images/s in this process (the difference is what the queue, the
database, the storage writes and the webhook cost). The same Celery setup
running a no-op task (bench.celery_floor) drains a queue too: the part of the overhead that
Celery itself takes with the reliability settings the service requires. Latency: uploads at
a steady pace below capacity, upload-to-completed p50/p95. Servers run on loopback only."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.bench_pipeline import photo_like, pipeline_images_per_second
from tests.fixtures.postgres import start_postgres
from tests.fixtures.redis import start_redis
from tests.fixtures.s3 import start_s3
from tests.fixtures.services import ServiceStack, embedded_env, running_stack, server_env, wait_for_terminal
from tests.support.images import encode


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def upload(client, data: bytes) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/api/newTask", files={"file": ("b.jpg", data, "image/jpeg")})
    response.raise_for_status()
    return response.json()["task_id"]


def wait_for_results(directory: Path, count: int, timeout: float = 300) -> list[float]:
    """Modification times of the first ``count`` result files, once there are that many.

    Polled slowly on purpose: a tight polling loop here would take CPU from the worker it measures
    on a small machine; the files' own timestamps carry the timing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if directory.is_dir():
            written = sorted(entry.stat().st_mtime for entry in os.scandir(directory) if entry.name.endswith(".jpg"))
            if len(written) >= count:
                return written[:count]
        time.sleep(0.25)
    raise TimeoutError(f"fewer than {count} results in {directory}")


def completed_at(client, task_id: int) -> float:  # type: ignore[no-untyped-def]
    return datetime.fromisoformat(client.get(f"/api/tasks/{task_id}").json()["updated_at"]).timestamp()


def wait_quietly(client, task_id: int, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    """Polled slowly on purpose: a tight loop here would take CPU from the worker it measures."""
    deadline = time.monotonic() + timeout
    while client.get(f"/api/isReady/{task_id}").json()["status"] not in ("completed", "failed"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} not finished after {timeout}s")
        time.sleep(0.25)


def drain_rate(stack: ServiceStack, data: bytes, uploads: int) -> tuple[float, float]:
    """Tasks/s of one warm worker draining a full queue (the first task warms it up), and the
    median pipeline time the worker itself measured (contention from the API, the database and
    the broker on the same cores shows up there)."""
    with stack.client() as client:
        ids = [upload(client, data) for _ in range(uploads + 1)]
        stack.start_worker("--concurrency=1")
        wait_quietly(client, ids[-1])  # one worker, FIFO: the last one finishes last
        statuses = {wait_for_terminal(client, task_id)["status"] for task_id in ids}
        assert statuses == {"completed"}, statuses
        finished = sorted(completed_at(client, task_id) for task_id in ids)
        worker_ms = [client.get(f"/api/tasks/{task_id}").json()["metadata"]["processing_ms"] for task_id in ids[1:]]
    return uploads / (finished[-1] - finished[0]), statistics.median(worker_ms)


def queue_alone_rate(stack: ServiceStack, tasks: int, directory: Path) -> float:
    """Tasks/s of one warm worker with the service's Celery settings draining no-op tasks."""
    env = {**stack.env, "IMGPROC_QUEUE_NAME": "imgproc-bench-floor"}  # out of the service worker's way
    command = [sys.executable, "-m", "bench.celery_floor"]
    subprocess.run([*command, "send", str(tasks + 1), str(directory)], env=env, check=True)
    with open(stack.log_dir / "celery-floor.log", "ab") as log:
        worker = subprocess.Popen(
            [*command, "worker", "--concurrency=1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            written = wait_for_results(directory, tasks + 1)
        finally:
            ServiceStack.stop_process(worker)
    return tasks / (written[-1] - written[0])


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
            finished = completed_at(client, task_id)
            assert task["status"] == "completed"
            latencies.append(finished - started)
    return latencies


@dataclass
class ModeFigures:
    name: str
    pure_rate: float  # images/s of the pipeline alone, in this process
    rate: float  # tasks/s through API + queue + worker
    queue_alone_rate: float  # tasks/s of a no-op task through the same Celery setup
    worker_ms: float  # the pipeline's median time as the worker measured it
    latencies: list[float]

    @property
    def overhead(self) -> float:
        return 1 - self.rate / self.pure_rate

    @property
    def queue_alone_overhead(self) -> float:
        """The overhead if the database, files and report cost nothing: Celery's share alone."""
        pure_ms, queue_ms = 1000 / self.pure_rate, 1000 / self.queue_alone_rate
        return queue_ms / (pure_ms + queue_ms)


def measure_mode(name: str, env: dict[str, str], log_dir: Path, data: bytes, uploads: int) -> ModeFigures:
    with running_stack(env, log_dir, workers=0) as stack:
        # Side by side: the machine's speed drifts between runs, so the pure figure is taken
        # around the drain, with the same servers up (and idle).
        before = pipeline_images_per_second(data, runs=30)
        rate, worker_ms = drain_rate(stack, data, uploads)
        pure = statistics.mean((before, pipeline_images_per_second(data, runs=30)))
        queue_rate = queue_alone_rate(stack, uploads, log_dir / "celery-floor")
        latencies = steady_latency(stack, data, uploads=30, interval=2 / pure)
    return ModeFigures(name, pure, rate, queue_rate, worker_ms, latencies)


def print_table(rows: list[ModeFigures]) -> None:
    columns = [
        "pure ms",
        "ms/task",
        "tasks/s",
        "overhead",
        "queue alone ms",
        "its overhead",
        "ms in worker",
        "p50 ms",
        "p95 ms",
    ]
    print(f"{'mode':<28}" + "".join(f"{column:>15}" for column in columns))
    for row in rows:
        cells = [
            f"{1000 / row.pure_rate:.1f}",
            f"{1000 / row.rate:.1f}",
            f"{row.rate:.1f}",
            f"{row.overhead:.0%}",
            f"{1000 / row.queue_alone_rate:.1f}",
            f"{row.queue_alone_overhead:.0%}",
            f"{row.worker_ms:.1f}",
            f"{percentile(row.latencies, 50) * 1000:.0f}",
            f"{percentile(row.latencies, 95) * 1000:.0f}",
        ]
        print(f"{row.name:<28}" + "".join(f"{cell:>15}" for cell in cells))
    print(
        "\ntarget: queue + database overhead under 15% of the pure pipeline"
        "\n(overhead = 1 - tasks/s / pure images/s; 'its overhead' = what the queue alone would cost)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=60)
    args = parser.parse_args()
    data = encode(photo_like(1920, 1080, seed=7), "JPEG", quality=90)
    print(f"input: 1920x1080 JPEG, {len(data)} bytes; {args.uploads} uploads per mode; one worker, concurrency 1")
    print("pure pipeline: images/s in this process, measured just before and just after each drain\n")

    workdir = Path(tempfile.mkdtemp(prefix="imgproc-bench-"))
    postgres = start_postgres()
    redis = start_redis()
    s3 = start_s3("imgproc-bench")
    limits = {
        "IMGPROC_WORKER_CONCURRENCY": "1",
        "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
        "IMGPROC_MAX_PENDING_TASKS_PER_USER": "100000",
        "IMGPROC_LOG_LEVEL": "WARNING",
    }
    try:
        s3_env = {
            **server_env(postgres.create_database("bench_s3"), redis.url.replace("/0", "/1"), workdir / "server-s3"),
            **s3.settings_env(),
        }
        modes = {
            "embedded (SQLite, files)": embedded_env(workdir / "embedded"),
            "PostgreSQL + Redis, files": server_env(postgres.create_database("bench"), redis.url, workdir / "server"),
            "PostgreSQL + Redis, S3": s3_env,
        }
        rows = [
            measure_mode(name, {**env, **limits}, workdir / f"logs-{index}", data, args.uploads)
            for index, (name, env) in enumerate(modes.items())
        ]
    finally:
        s3.stop()
        shutil.rmtree(s3.directory, ignore_errors=True)
        redis.stop()
        postgres.stop()
        shutil.rmtree(postgres.data_dir.parent, ignore_errors=True)
        shutil.rmtree(redis.directory, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
