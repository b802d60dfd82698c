from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import LiveCluster, running_cluster


@pytest.fixture(scope="package")
def live_cluster() -> Iterator[LiveCluster]:
    yield from running_cluster()
