"""The short load run (bench/loadtest.py): 100 uploads from 10 cookie users, 2 workers.
Correctness, not timing: everything accepted completes, one result file each, and every user
lists exactly their own tasks."""

from __future__ import annotations

import asyncio

from bench.loadtest import UNLIMITED, check, drive, print_figures
from tests.fixtures.services import running_stack, server_env
from tests.support import images
from tests.support.report import record


def test_100_uploads_from_10_users_all_complete_and_stay_private(pg_database, fresh_redis_url, tmp_path):
    env = server_env(pg_database, fresh_redis_url, tmp_path / "data")
    env.update(UNLIMITED, IMGPROC_WORKER_CONCURRENCY="1", IMGPROC_LOG_LEVEL="WARNING")
    with running_stack(env, tmp_path / "logs", workers=2) as stack:
        figures = asyncio.run(drive(stack.url, uploads=100, users=10, data=images.jpeg(800, 600), timeout=120))
        problems = check(figures, stack.storage_dir)
    figures.update(workers=2, concurrency=1)
    print_figures(figures, 2, 1)
    record("load", **figures)
    assert not problems, problems
