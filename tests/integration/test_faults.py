"""Faults with real processes on PostgreSQL + Redis. Each test ends with the ledger:
accepted = completed + failed, nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import time

import pytest

from tests.fixtures.services import ServiceStack, running_stack, server_env, wait_for_terminal
from tests.utils import images

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(pg_database, redis_server, tmp_path):
    redis_db = f"{redis_server.rsplit('/', 1)[0]}/{random.randint(1, 15)}"
    env = server_env(pg_database, redis_db, tmp_path / "data")
    with running_stack(env, tmp_path / "logs", workers=0) as running:
        yield running


def upload_many(client, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        response = client.post("/api/newTask", files={"file": ("a.jpg", images.jpeg(640, 480), "image/jpeg")})
        assert response.status_code == 200, response.text
        ids.append(response.json()["task_id"])
    return ids


def ledger(stack: ServiceStack, client, ids: list[int], *, timeout: float = 90) -> dict[str, int]:
    statuses = [wait_for_terminal(client, task_id, timeout=timeout)["status"] for task_id in ids]
    results = sorted(p.name for p in (stack.log_dir.parent / "data" / "storage" / "results").glob("*"))
    counts = {
        "accepted": len(ids),
        "completed": statuses.count("completed"),
        "failed": statuses.count("failed"),
        "result_files": len(results),
    }
    print("ledger:", counts)
    assert counts["completed"] + counts["failed"] == counts["accepted"]  # nothing lost
    assert counts["result_files"] == counts["completed"]  # nothing duplicated
    return counts


def test_reports_made_while_the_api_is_down_are_applied_when_it_returns(stack):
    with stack.client() as client:
        ids = upload_many(client, 5)
        stack.stop_api()
        stack.start_worker()
        results_dir = stack.log_dir.parent / "data" / "storage" / "results"
        deadline = time.monotonic() + 60
        while len(list(results_dir.glob("*.jpg"))) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(list(results_dir.glob("*.jpg"))) == len(ids), stack.logs("worker0")
        time.sleep(1)  # the worker has tried to report and queued its retries
        stack.start_api()
        counts = ledger(stack, client, ids, timeout=90)
    assert counts["completed"] == 5
