from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import LiveCluster, cluster_for_tests


@pytest.fixture(scope="package")
def live_cluster() -> Iterator[LiveCluster]:
    yield from cluster_for_tests()
