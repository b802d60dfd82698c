"""Fixtures for the chart, image and dev-config tests.

`render(values)` runs `helm template` once per distinct set of values for the whole session and
returns the parsed objects (hooks and the helm test pod included); `helm_fails(values)` returns
helm's error output for values that must be rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.charts.rendering import Renderer

# The test bed fixtures (k8s_tools_bin, kube). Once tests/conftest.py registers the module with
# `pytest_plugins = ["tests.fixtures.kube"]` this import is redundant but harmless: the module
# keeps a single test bed per process.
from tests.fixtures.kube import k8s_tools_bin, kube  # noqa: F401


@pytest.fixture(scope="session")
def renderer(k8s_tools_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Renderer:  # noqa: F811
    return Renderer(k8s_tools_bin, tmp_path_factory.mktemp("helm-template"))


@pytest.fixture(scope="session")
def render(renderer: Renderer) -> Callable[..., list[dict[str, Any]]]:
    return renderer.render


@pytest.fixture(scope="session")
def helm_fails(renderer: Renderer) -> Callable[..., str]:
    return renderer.failure


@pytest.fixture(scope="session")
def notes(renderer: Renderer) -> Callable[..., str]:
    return renderer.notes
