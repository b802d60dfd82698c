"""redis.sentinel.enabled on real pods: the bundled Redis with one replica and three sentinels.
During a bounded burst of uploads through the ingress the master pod is deleted; the sentinels
promote the replica, the API keeps accepting (503 + Retry-After at most during the switch, the
client retries), the worker follows the new master, the old master's pod comes back as a
replica, and the ledger (tests.fixtures.ledger) ends with nothing lost, nothing duplicated and a
result file for every completed task. The operator follows the new master too: messages pushed
onto the promoted master after the promotion (a queue of the test's own, which no worker
consumes) make it scale, and its connection is among that server's clients.

Figures printed: seconds without a master (pod deleted -> the sentinels name the replica),
503s served, tasks run more than once (re-deliveries), tasks re-enqueued by the reconciler, the
operator's scale-up on the probe messages."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import CHART, LiveCluster, Release, timed
from tests.support.cluster import Burst
from tests.support.images import jpeg
from tests.support.waiting import wait_until

UPLOADS = 40  # the burst: bounded in count ...
BURST_SECONDS = 240  # ... and in time
PROBE_QUEUE = "failover-probe"  # counted by the operator (the test adds it), consumed by no worker


@pytest.fixture(scope="module")
def sentinel_release(live_cluster: LiveCluster) -> Iterator[Release]:
    # Helm installs crds/ only when the CRD is missing and never upgrades it: a cluster that
    # kept an older WorkerAutoscaler CRD would prune spec.redis.sentinel.
    live_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    installed = live_cluster.install(
        live_cluster.new_namespace("chart-sentinel"),
        "--set",
        "redis.sentinel.enabled=true",
        "--set",
        "redis.replica.replicaCount=1",
        # When all three sentinels call the election in the same instant, each votes for itself
        # and none is elected ("-failover-abort-not-elected", seen in a cold CI-like run on two
        # busy cores); the next try waits 2 x failover-timeout: 20 s here instead of the default's
        # 2 minutes, which is past this test's bound and lets the old master return as master.
        "--set",
        "redis.sentinel.failoverTimeout=10000",
        "--set",
        "api.replicaCount=1",
        # Room above what the burst leaves running (2 or 3 workers) for the probe's scale-up.
        "--set",
        "autoscaler.maxReplicaCount=6",
        # A message on its way when the master went may be gone with it (asynchronous
        # replication): the reconciler's bound must fit the test's, and its work is counted.
        "--set",
        "config.extraEnv.IMGPROC_RECONCILE_AFTER_SECONDS=30",
        "--set",
        "config.extraEnv.IMGPROC_RECONCILE_INTERVAL_SECONDS=5",
    )
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


def redis_cli(cluster: LiveCluster, release: Release, pod: str, *args: str, port: int = 6379) -> str:
    """redis-cli inside a Redis/sentinel pod (REDISCLI_AUTH is set there); '' on failure."""
    result = cluster.kubectl(
        "exec",
        "-n",
        release.namespace,
        pod,
        "--",
        "redis-cli",
        "-p",
        str(port),
        "--raw",
        *args,
        check=False,
        timeout=30,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def named_master(cluster: LiveCluster, release: Release) -> str | None:
    """The pod the sentinels' majority names as master (its short name), None without one."""
    votes = []
    for i in range(3):
        answer = redis_cli(
            cluster,
            release,
            f"{release.name}-redis-sentinel-{i}",
            "sentinel",
            "get-master-addr-by-name",
            "mymaster",
            port=26379,
        )
        if answer:
            votes.append(answer.split()[0].split(".")[0])
    best = max(set(votes), key=votes.count, default=None)
    return best if best is not None and votes.count(best) >= 2 else None


def role(cluster: LiveCluster, release: Release, pod: str) -> str:
    return (redis_cli(cluster, release, pod, "role").splitlines() or [""])[0]


def database(cluster: LiveCluster, release: Release, sql: str) -> str:
    result = cluster.kubectl(
        "exec",
        "-n",
        release.namespace,
        f"{release.name}-postgresql-0",
        "--",
        "psql",
        "-U",
        "imgproc",
        "-d",
        "imgproc",
        "-tAc",
        sql,
        timeout=30,
    )
    return result.stdout.strip()


def diagnostics(cluster: LiveCluster, release: Release) -> str:
    """Pods, and the logs of every Redis and sentinel container (the previous one too), for a failure."""
    out = [cluster.kubectl("get", "pods", "-n", release.namespace, "-o", "wide", check=False).stdout]
    pods = cluster.get(
        "pods", "-n", release.namespace, "-l", f"app.kubernetes.io/instance={release.name},app.kubernetes.io/name=redis"
    )["items"]
    for pod in pods:
        name = pod["metadata"]["name"]
        for previous in ("--previous=false", "--previous=true"):
            logs = cluster.kubectl("logs", "-n", release.namespace, name, previous, "--tail=80", check=False)
            out.append(f"--- {name} {previous}\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def operator_clients(cluster: LiveCluster, release: Release, pod: str) -> list[str]:
    """The connections from the operator's pod among the clients of the Redis in `pod`."""
    (operator,) = release.pods("operator")
    address = operator["status"]["podIP"]
    return [
        line
        for line in redis_cli(cluster, release, pod, "client", "list").splitlines()
        if f" addr={address}:" in f" {line}"
    ]


def test_deleting_the_master_pod_fails_over_with_nothing_lost(sentinel_release: Release, live_cluster: LiveCluster):
    try:
        failover_under_a_burst(sentinel_release, live_cluster)
    except Exception:
        print(diagnostics(live_cluster, sentinel_release))
        raise


def failover_under_a_burst(release: Release, cluster: LiveCluster) -> None:
    master0, replica0 = f"{release.name}-redis-master-0", f"{release.name}-redis-replicas-0"
    assert named_master(cluster, release) == master0
    assert role(cluster, release, master0) == "master" and role(cluster, release, replica0) == "slave"
    (scaler,) = cluster.get("workerautoscalers", "-n", release.namespace)["items"]
    assert scaler["spec"]["redis"]["sentinel"]["masterName"] == "mymaster"  # not pruned by an old CRD
    scaler_name, worker = scaler["metadata"]["name"], scaler["spec"]["scaleTargetRef"]["name"]

    def scaler_now() -> dict:
        return cluster.get("workerautoscaler", scaler_name, "-n", release.namespace)

    def replicas() -> int:
        return cluster.get("deployment", worker, "-n", release.namespace)["spec"]["replicas"]

    # The operator also counts a queue of the test's own that no worker consumes. Set before the
    # failover: a change of the spec rebuilds the operator's Redis client, after it nothing may.
    queues = scaler["spec"].get("queues") or ["imgproc"]
    cluster.kubectl(
        "patch",
        "workerautoscaler",
        scaler_name,
        "-n",
        release.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"queues": [*queues, PROBE_QUEUE]}}),
    )
    wait_until(
        lambda: (s := scaler_now()).get("status", {}).get("observedGeneration") == s["metadata"]["generation"],
        timeout=60,
        interval=1,
        what="the operator polls with the probe queue",
    )

    source = release.since_now()
    with Burst(release, jpeg(640, 480), users=1, count=UPLOADS, seconds=BURST_SECONDS, pause=0.2) as burst:
        wait_until(
            lambda: len(burst.accepted) >= 10 or burst.done,
            timeout=120,
            interval=0.2,
            what="10 uploads accepted before the fault",
        )
        assert len(burst.accepted) >= 10 and not burst.done, (len(burst.accepted), burst.refused)
        deleted_at = time.monotonic()
        cluster.kubectl("delete", "pod", "-n", release.namespace, master0, "--wait=false")
        with timed("Redis failover (pod deleted -> replica named)"):
            wait_until(
                lambda: named_master(cluster, release) == replica0,
                timeout=120,
                interval=0.3,
                what="the sentinels promote the replica",
            )
        promoted_at = time.monotonic()
    burst_seconds = time.monotonic() - burst.started
    accepted = burst.ids()
    served_503, rate_limited, transport_errors = (
        burst.refused.get(503, 0),
        burst.refused.get(429, 0),
        burst.transport_errors,
    )
    # Every accepted task completed or failed with a reason, none lost, one result file each.
    counts = burst.ledger(source, "cluster: Redis master pod deleted (Sentinel failover)", timeout=180)

    rows = int(database(cluster, release, "SELECT count(*) FROM tasks"))
    logs = cluster.kubectl(
        "logs", "-n", release.namespace, "-l", "app.kubernetes.io/component=api", "--tail=-1", check=False
    ).stdout
    reconciled = sum(
        int(line.split("re-enqueued ")[1].split()[0])
        for line in logs.splitlines()
        if "re-enqueued " in line and "stale task" in line
    )

    # The old master's pod is back, as a replica of the promoted one.
    deadline = time.monotonic() + 120
    while role(cluster, release, master0) != "slave" and time.monotonic() < deadline:
        time.sleep(1)
    rejoined = role(cluster, release, master0)

    # The operator reads the promoted master: it scales on messages pushed there only now, after
    # the promotion, and its connection is among that server's clients.
    (scaler,) = cluster.get("workerautoscalers", "-n", release.namespace)["items"]
    per_replica, maximum = scaler["spec"]["tasksPerReplica"], scaler["spec"]["maxReplicaCount"]
    # The burst's workers may still be running (a full run once found 5 of 6 here): the probe
    # needs room above them, so wait for the drained burst's scale-down to leave some.
    wait_until(lambda: replicas() < maximum, timeout=120, interval=2, what=f"the workers below their max {maximum}")
    before = replicas()
    target = min(before + 2, maximum)  # within one scale-up step (maxStep 4)
    probe = per_replica * target  # alone worth `target` workers; the burst is drained
    try:
        assert redis_cli(cluster, release, replica0, "rpush", PROBE_QUEUE, *["p"] * probe) == str(probe)
        pushed_at = time.monotonic()
        backlog = wait_until(
            lambda: (n := scaler_now().get("status", {}).get("backlog", 0)) >= probe and n,
            timeout=60,
            interval=1,
            what=f"the operator counts the {probe} probe messages",
        )
        wait_until(
            lambda: replicas() >= target,
            timeout=60,
            interval=1,
            what=f"the operator scales {before} -> {target} on the probe messages",
        )
        scaled_after = time.monotonic() - pushed_at
        clients = operator_clients(cluster, release, replica0)
    finally:
        redis_cli(cluster, release, replica0, "del", PROBE_QUEUE)

    figures = {
        "accepted": counts["accepted"],
        "completed": counts["completed"],
        "failed": counts["failed"],
        "redelivered": counts["redelivered"],
        "reconciled": reconciled,
        "served_503": served_503,
        "seconds_without_master": round(promoted_at - deleted_at, 1),
        "burst_seconds": round(burst_seconds, 1),
        "operator_scaled": f"{before} -> {replicas()} in {scaled_after:.1f} s (backlog {backlog})",
    }
    print("redis failover ledger:", figures)
    assert "?" not in counts["failed_reasons"], counts["failed_reasons"]  # failed only with a reason
    assert rows == len(set(accepted)), "a refused upload left a row, or a task was stored twice"
    assert rate_limited == 0 and transport_errors == 0  # only 200 or 503 with Retry-After
    assert rejoined == "slave", f"the old master's pod did not rejoin as a replica: role {rejoined!r}"
    assert named_master(cluster, release) == replica0
    assert clients, "no connection from the operator's pod to the promoted master"
