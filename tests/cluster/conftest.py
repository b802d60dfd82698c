from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import CHART, LiveCluster, Release, running_cluster


@pytest.fixture(scope="package")
def live_cluster() -> Iterator[LiveCluster]:
    yield from running_cluster()


@pytest.fixture(scope="package")
def ha_release(live_cluster: LiveCluster) -> Iterator[Release]:
    """One release with both high-availability levers of the chart on, a PostgreSQL read replica
    and Redis Sentinel, shared by test_postgresql_replicas and test_redis_failover: one install
    and uninstall instead of two (each a minute or more here). Each test reads its own user's
    tasks and counts its ledger from its own start, so neither sees the other's work."""
    # Helm installs crds/ only when the CRD is missing and never upgrades it: a cluster that
    # kept an older WorkerAutoscaler CRD would prune spec.redis.sentinel.
    live_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    installed = live_cluster.install(
        live_cluster.new_namespace("chart-ha"),
        *("--set", "postgresql.readReplicas.replicaCount=1"),
        *("--set", "redis.sentinel.enabled=true", "--set", "redis.replica.replicaCount=1"),
        *("--set", "api.replicaCount=1"),
        # Room above what the failover burst leaves running (2 or 3 workers) for its probe's scale-up.
        *("--set", "autoscaler.maxReplicaCount=6"),
        # Status polls of finished tasks come from the replica as soon as it has them.
        *("--set-string", "config.extraEnv.IMGPROC_DATABASE_REPLICA_CHECK_SECONDS=0.5"),
        # A message on its way when the Redis master went may be gone with it (asynchronous
        # replication): the reconciler's bound must fit the failover test's, and its work is counted.
        *("--set-string", "config.extraEnv.IMGPROC_RECONCILE_AFTER_SECONDS=30"),
        *("--set-string", "config.extraEnv.IMGPROC_RECONCILE_INTERVAL_SECONDS=5"),
    )
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)
