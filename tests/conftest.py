"""Shared fixtures, the tier markers and the duration table. Real servers start in
tests/fixtures/; this file wires them in. Helpers the tests share are in tests/support/."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# No per-example deadline: the property tests check decisions, not speed, and an example can
# take a few hundred ms on a busy 2-core machine (a cold CI run did: FlakyFailure,
# DeadlineExceeded in tests/unit/autoscaler). Speed is the benchmarks' business.
hypothesis_settings.register_profile("imgproc", deadline=None)
hypothesis_settings.load_profile("imgproc")

pytest_plugins = [
    "tests.fixtures.api",
    "tests.fixtures.charts",
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.kube",
    "tests.fixtures.cluster",
    "tests.fixtures.frontend",
    "tests.fixtures.otelcol",
]

# Tests must never pick up a developer's own configuration (tracing's OTEL_* included).
for _name in [n for n in os.environ if n.startswith(("IMGPROC_", "OTEL_")) and not n.startswith("IMGPROC_TEST_")]:
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
        deps.known_users,
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
    from app.tasks.schema import upgrade

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


# --- tiers: the top folder under tests/ is the marker (tests/README.md) --------------------------

TESTS_DIR = Path(__file__).resolve().parent
TIERS = ("unit", "integration", "k8s", "cluster", "compose")


def _tier_path(nodeid: str) -> list[str]:
    """["unit", "imaging", "test_pipeline.py"] for tests/unit/imaging/test_pipeline.py::test_x."""
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1:] if parts and parts[0] == "tests" else parts


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            tier = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: every test lives in one of tests/{{{','.join(TIERS)}}}/")
        item.add_marker(getattr(pytest.mark, tier))


# --- the duration per package, printed at the end of every run ---------------------------------

_durations: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # package -> [tests, seconds]


def _package(nodeid: str) -> str:
    """unit/imaging, integration/reliability, cluster: the tier and its first folder, if any."""
    parts = _tier_path(nodeid)
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _durations[_package(report.nodeid)]
    entry[1] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        entry[0] += 1


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    # Under pytest-xdist the controller gets every worker's reports and prints the one table.
    if not _durations or hasattr(config, "workerinput"):
        return
    rows = sorted(_durations.items(), key=lambda row: row[1][1], reverse=True)
    width = max(len("total"), *(len(name) for name in _durations))
    terminalreporter.section("duration per package (setup + call + teardown)")
    for name, (tests, seconds) in rows:
        terminalreporter.write_line(f"{name:<{width}}  {tests:>5} tests  {seconds:>8.1f} s")
    total_tests = sum(tests for tests, _ in _durations.values())
    total_seconds = sum(seconds for _, seconds in _durations.values())
    terminalreporter.write_line(f"{'total':<{width}}  {total_tests:>5} tests  {total_seconds:>8.1f} s")
    if path := os.environ.get("IMGPROC_TEST_DURATIONS"):
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with open(path, "a", encoding="utf-8") as out:
            for name, (tests, seconds) in rows:
                out.write(json.dumps({"package": name, "tests": tests, "seconds": round(seconds, 3), "at": at}) + "\n")
