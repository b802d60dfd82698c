"""Fixtures of the autoscaler tests: the Kubernetes test bed (shared with tests/k8s/charts), the
WorkerAutoscaler CRD, a password-protected Redis, and autoscaled namespaces."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import KubeTestBed
from tests.fixtures.redis import RedisServer, start_redis
from tests.support.autoscaler.k8s_env import Autoscaled, deploy, install_crd, require_password, undeploy


@pytest.fixture(scope="session")
def crd(kube: KubeTestBed) -> dict:
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
def autoscaled(
    kube: KubeTestBed, crd: dict, redis_auth: RedisServer, tmp_path: Path
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
