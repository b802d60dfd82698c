"""Fixtures for the fault tests: the real service (API + workers as processes) on PostgreSQL
and Redis, with workers that can be made slow (tests.fixtures.slow_worker) so a fault can be
injected while a task is in flight."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.postgres import PostgresServer, start_postgres
from tests.fixtures.redis import RedisServer, fresh_redis_db, start_redis
from tests.fixtures.services import ServiceStack, embedded_env, running_stack, server_env

REPO_ROOT = Path(__file__).resolve().parents[3]
# Fault tests upload in bursts from one client: the per-user limits are not under test here.
GENEROUS_LIMITS = {
    "UPLOADS_PER_MINUTE_PER_USER": 100_000,
    "MAX_PENDING_TASKS_PER_USER": 100_000,
    "NEW_USERS_PER_MINUTE_PER_IP": 100_000,
}


@pytest.fixture
def fresh_redis_url(redis_server) -> str:
    return fresh_redis_db(redis_server)


@pytest.fixture
def fault_stack(pg_database, redis_server, tmp_path):
    """fault_stack(workers=, delay=, database_url=, redis_url=, **settings) -> context manager
    yielding a running ServiceStack. delay: seconds each image takes in the worker."""

    @contextlib.contextmanager
    def make(
        *,
        workers: int = 1,
        delay: float = 0.0,
        database_url: str | None = None,
        redis_url: str | None = None,
        **settings: object,
    ) -> Iterator[ServiceStack]:
        env = server_env(database_url or pg_database, redis_url or fresh_redis_db(redis_server), tmp_path / "data")
        env.update({f"IMGPROC_{k}": str(v) for k, v in {**GENEROUS_LIMITS, **settings}.items()})
        if delay:
            env["IMGPROC_TEST_PIPELINE_DELAY"] = str(delay)
        # `python -m tests.fixtures.slow_worker` must resolve wherever pytest was started from.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        with running_stack(env, tmp_path / "logs", workers=workers, worker_module="tests.fixtures.slow_worker") as st:
            yield st

    return make


@pytest.fixture
def dedicated_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own (AOF on), to stop, crash, wipe and restart."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def dedicated_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, to stop and start."""
    base = Path(tempfile.mkdtemp(prefix="imgproc-pg-"))
    server = start_postgres(base)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):  # already stopped by the test
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def embedded_fault_stack(tmp_path):
    """embedded_fault_stack(delay=, **settings) -> context manager yielding a ServiceStack on
    SQLite whose `start_embedded()` runs `imgproc run` (API + its worker) with the slow worker;
    nothing is started yet. The reconciler stays at its 600 s, out of the picture."""

    @contextlib.contextmanager
    def make(*, delay: float = 0.0, **settings: object) -> Iterator[ServiceStack]:
        env = embedded_env(tmp_path / "data")
        env.update({f"IMGPROC_{k}": str(v) for k, v in {**GENEROUS_LIMITS, **settings}.items()})
        if delay:
            env["IMGPROC_TEST_PIPELINE_DELAY"] = str(delay)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        with running_stack(
            env, tmp_path / "logs", workers=0, worker_module="tests.fixtures.slow_worker", start_api=False
        ) as stack:
            yield stack

    return make
