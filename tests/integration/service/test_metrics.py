"""Metrics scraped from the real processes: a prefork worker's port (its children merged, through
their restarts and a SIGKILL), the API's metrics port (apart from its routes), and `imgproc run`'s
/metrics (API and worker together)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import httpx

from tests.fixtures.ports import free_port
from tests.fixtures.processes import child_pids
from tests.fixtures.services import embedded_env, running_stack, server_env
from tests.support.metrics import Scraped, scrape
from tests.support.tasks import small_jpeg, upload, upload_accepted, wait_for_terminal
from tests.support.waiting import wait_until

STAGES = ("read", "decode", "resize", "encode", "store")


def scraped_when_up(url: str) -> Scraped:
    def attempt() -> Scraped | None:
        try:
            return scrape(url)
        except httpx.HTTPError:
            return None

    return wait_until(attempt, timeout=60, what=f"metrics at {url}")


def pids_of(directory: Path, pattern: str) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob(pattern)}


def test_a_scrape_of_the_worker_sums_its_pool_children_through_restarts_and_a_kill(tmp_path):
    port = free_port()
    base = tmp_path / "metrics"
    with running_stack(embedded_env(tmp_path / "data"), tmp_path / "logs", workers=0) as stack:
        # Every pool child runs one task and is replaced: each task is counted by another process.
        worker = stack.start_worker(
            "--max-tasks-per-child=1", env={"IMGPROC_METRICS_PORT": str(port), "IMGPROC_METRICS_DIR": str(base)}
        )
        url = f"http://127.0.0.1:{port}/metrics"
        scraped_when_up(url)
        [directory] = base.iterdir()
        assert directory.name == f"imgproc-metrics-worker-{worker.pid}"
        with stack.client() as client:
            ids = [upload_accepted(client, small_jpeg()) for _ in range(4)]
            for task_id in ids:
                assert wait_for_terminal(client, task_id, timeout=120)["status"] == "completed"

        def all_counted() -> Scraped | None:
            scraped = scrape(url)
            delivered = scraped.value("imgproc_worker_report_deliveries_total", attempt="first", result="delivered")
            return scraped if delivered == 4 else None

        scraped = wait_until(all_counted, timeout=30, what="four delivered reports")
        assert scraped.value("imgproc_worker_tasks_total", outcome="completed") == 4
        assert scraped.value("imgproc_worker_queue_wait_seconds_count") == 4
        for stage in STAGES:
            assert scraped.value("imgproc_worker_stage_duration_seconds_count", stage=stage) == 4, stage
        assert scraped.value("imgproc_storage_operation_duration_seconds_count", operation="write") >= 4
        assert scraped.value("imgproc_worker_reports_pending") == 0
        assert scraped.value("imgproc_worker_report_retries_waiting") == 0
        counting = pids_of(directory, "counter_*.db") - {worker.pid}
        assert len(counting) >= 4, counting  # four children counted...
        assert sum(not os.path.exists(f"/proc/{pid}") for pid in counting) >= 2  # ...most of them gone since
        # Children that exited took their live gauges with them (worker_process_shutdown).
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids_of(directory, "gauge_livesum_*.db"))

        victim = child_pids(worker.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in child_pids(worker.pid), timeout=30, what="the pool to replace its child")
        after = scrape(url)
        assert after.value("imgproc_worker_tasks_total", outcome="completed") == 4
        assert after.value("imgproc_worker_stage_duration_seconds_count", stage="decode") == 4
    assert not directory.exists()  # the worker removes its own directory when it stops


def test_the_api_counts_a_refused_upload_on_its_metrics_port_and_not_on_its_routes(pg_database, redis_server, tmp_path):
    port = free_port()
    redis_db = f"{redis_server.rsplit('/', 1)[0]}/{random.randint(1, 15)}"
    env = {
        **server_env(pg_database, redis_db, tmp_path / "data"),
        "IMGPROC_METRICS_PORT": str(port),
        "IMGPROC_MAX_UPLOAD_BYTES": "100000",
    }
    with running_stack(env, tmp_path / "logs", workers=0) as stack:
        url = f"http://127.0.0.1:{port}/metrics"
        before = scraped_when_up(url).value("imgproc_uploads_refused_total", reason="size")
        with stack.client() as client:
            assert upload(client, b"\xff" * 100_001).status_code == 413
            assert client.get("/metrics").status_code == 404  # the ingress routes the API's port only
        scraped = scrape(url)
        assert scraped.value("imgproc_uploads_refused_total", reason="size") == before + 1
        assert scraped.value("imgproc_http_requests_total", route="/api/newTask", method="POST", status="413") == 1
        assert scraped.value("imgproc_http_requests_total", route="unmatched", method="GET", status="404") == 1
        assert scraped.value("process_cpu_seconds_total") > 0


def test_imgproc_run_serves_the_api_and_its_worker_together_on_metrics(tmp_path):
    with running_stack(embedded_env(tmp_path / "data"), tmp_path / "logs", workers=0, start_api=False) as stack:
        stack.start_embedded()
        with stack.client() as client:
            task_id = upload_accepted(client, small_jpeg())
            assert wait_for_terminal(client, task_id, timeout=120)["status"] == "completed"

            def both_counted() -> Scraped | None:
                response = client.get("/metrics")
                assert response.status_code == 200
                scraped = Scraped(response.text)
                return scraped if scraped.value("imgproc_worker_tasks_total", outcome="completed") == 1 else None

            scraped = wait_until(both_counted, timeout=30, what="the worker's count on the API's /metrics")
        assert scraped.value("imgproc_uploads_accepted_total") == 1
        assert scraped.value("imgproc_webhook_reports_total", result="applied", reason="completed") == 1
        # Storage is used by both: one series, both processes' calls summed (a write each at least).
        assert scraped.value("imgproc_storage_operation_duration_seconds_count", operation="write") >= 2
        assert scraped.value("imgproc_worker_stage_duration_seconds_count", stage="encode") == 1
