"""Shared fixtures. Real servers start in tests/fixtures/; this file wires them in."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.kube",
    "tests.fixtures.cluster",
]

# Tests must never pick up a developer's own configuration.
for _name in [n for n in os.environ if n.startswith("IMGPROC_") and not n.startswith("IMGPROC_TEST_")]:
    del os.environ[_name]


def reset_caches() -> None:
    """Forget every cached object built from settings (engine, Celery app, limiters...)."""
    from app.api import deps
    from app.core import celery_app, config, db, replica

    for cached in (
        config.get_settings,
        db.get_engine,
        db.get_sessionmaker,
        replica.get_replica,
        celery_app.get_celery_app,
        deps.get_storage,
        deps.new_user_limiter,
        deps.upload_limiter,
    ):
        cached.cache_clear()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """configure(NAME=value, ...) sets IMGPROC_ settings for this test and rebuilds caches."""

    def apply(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"IMGPROC_{name}", str(value))
        reset_caches()

    yield apply
    reset_caches()


@pytest.fixture
def embedded(configure, tmp_path: Path) -> Path:
    """Embedded settings (SQLite, files in tmp), migrated; returns the data dir."""
    from app.core.schema import upgrade

    configure(DATA_DIR=tmp_path / "data", COOKIE_SECURE="false")
    upgrade()
    return tmp_path / "data"


@pytest.fixture
def pg_database(postgres_server) -> str:
    return postgres_server.create_database(f"t_{secrets.token_hex(4)}")


# A component the suite needs but the machine lacks makes a test skip on a developer's machine
# (with the reason "needs ..." or "... missing ..."); under CI it fails instead, so a run that
# silently tested less cannot pass.
MISSING_COMPONENT = ("needs ", " is missing", " are missing")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    outcome = yield
    report = outcome.get_result()
    if not (os.environ.get("CI") and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = report.longrepr[2].removeprefix("Skipped: ")
    if reason.startswith(MISSING_COMPONENT[0]) or any(word in reason for word in MISSING_COMPONENT[1:]):
        report.outcome = "failed"
        report.longrepr = f"under CI a missing component fails the test: {reason}"
