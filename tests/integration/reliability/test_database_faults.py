"""PostgreSQL restarted under load, with a PostgreSQL of the test's own: the API answers 503
(never 500) while it is down and recovers without a restart (pool_pre_ping); the worker
retries marking a task `processing` (autoretry on DBAPIError) and its outcome report (the API
answers the webhook 503, so the report is queued and retried)."""

from __future__ import annotations

import time

from tests.fixtures.ledger import full_log, ledger, upload_many
from tests.support.tasks import upload, wait_for_status


def test_postgresql_restart_gives_503s_then_everything_completes(dedicated_postgres, fault_stack):
    started = time.monotonic()
    database_url = dedicated_postgres.create_database("faults")
    with (
        fault_stack(database_url=database_url, workers=1, delay=1.5, WORKER_CONCURRENCY=1) as stack,
        stack.client() as client,
    ):
        ids = upload_many(client, 4)
        wait_for_status(client, ids[0], ("processing",), timeout=30)
        api_pid = stack.api.pid

        dedicated_postgres.stop()
        down = {
            "POST /api/newTask": upload(client),
            "GET /api/tasks": client.get("/api/tasks"),
            f"GET /api/isReady/{ids[1]}": client.get(f"/api/isReady/{ids[1]}"),
            "GET /readyz": client.get("/readyz"),
        }
        for what, response in down.items():
            assert response.status_code == 503, (what, response.status_code, response.text)
            if what != "GET /readyz":
                assert response.headers.get("retry-after"), what
        assert client.get("/livez").status_code == 200
        # Long enough for the running task to finish and fail to report, and for the next one
        # to fail to mark itself processing.
        time.sleep(4)
        dedicated_postgres.start()

        counts = ledger(
            stack, client, ids, name="PostgreSQL restart", faults=1, timeout=90, refused=len(down), started=started
        )
        assert counts["completed"] == 4
        assert stack.api.pid == api_pid and stack.api.poll() is None, "the API was restarted"
        worker_log = full_log(stack, "worker0")
        assert "queued for retry" in worker_log  # the report of the task that was running
        assert "Retry in" in worker_log  # process_image retried on the database error
