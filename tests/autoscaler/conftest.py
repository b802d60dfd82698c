"""Fixtures of the autoscaler tests: the Kubernetes test bed (shared with tests/charts), the
WorkerAutoscaler CRD, a password-protected Redis, and autoscaled namespaces."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Redundant once tests/conftest.py lists "tests.fixtures.kube" in pytest_plugins; harmless
# before and after (the module shares one test bed per process).
from tests.autoscaler.k8s_env import Autoscaled, deploy, install_crd, require_password, undeploy
from tests.fixtures.kube import KubeTestBed, k8s_tools_bin, kube  # noqa: F401
from tests.fixtures.redis import RedisServer, start_redis


@pytest.fixture(scope="session")
def crd(kube: KubeTestBed) -> dict:  # noqa: F811
    return install_crd(kube)


@pytest.fixture(scope="session")
def redis_auth() -> Iterator[RedisServer]:
    """A Redis of the autoscaler tests only (some stop and restart it), password protected."""
    server = start_redis()
    require_password(server)
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def autoscaled(kube: KubeTestBed, crd: dict, redis_auth: RedisServer, tmp_path: Path  # noqa: F811
               ) -> Iterator[Callable[..., Autoscaled]]:
    """autoscaled(min=0, max=4, ...) -> a fresh namespace with the chart's objects and the operator."""
    started: list[Autoscaled] = []

    def start(**values: Any) -> Autoscaled:
        if redis_auth.process is None:  # a previous test stopped it
            redis_auth.start()
            require_password(redis_auth)
        env = deploy(kube, redis_auth, tmp_path, **values)
        started.append(env)
        return env

    yield start
    for env in started:
        undeploy(env)
