"""redis.sentinel.enabled on real pods: the bundled Redis with one replica and three sentinels.
During a bounded burst of uploads through the ingress the master pod is deleted; the sentinels
promote the replica, the API keeps accepting (503 + Retry-After at most during the switch, the
client retries), the worker follows the new master, the old master's pod comes back as a
replica, and the ledger ends with nothing lost and nothing duplicated.

Figures printed: seconds without a master (pod deleted -> the sentinels name the replica),
503s served, tasks run more than once (re-deliveries), tasks re-enqueued by the reconciler."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster.flows import client
from tests.fixtures.cluster import CHART, LiveCluster, Release, timed
from tests.fixtures.services import TERMINAL
from tests.utils.images import jpeg

pytestmark = pytest.mark.cluster

UPLOADS = 40  # the burst: bounded in count ...
BURST_SECONDS = 240  # ... and in time


@pytest.fixture(scope="module")
def sentinel_release(live_cluster: LiveCluster) -> Iterator[Release]:
    # Helm installs crds/ only when the CRD is missing and never upgrades it: a cluster that
    # kept an older WorkerAutoscaler CRD would prune spec.redis.sentinel.
    live_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    installed = live_cluster.install(
        live_cluster.new_namespace("chart-sentinel"),
        "--set", "redis.sentinel.enabled=true",
        "--set", "redis.replica.replicaCount=1",
        "--set", "api.replicaCount=1",
        # A message on its way when the master went may be gone with it (asynchronous
        # replication): the reconciler's bound must fit the test's, and its work is counted.
        "--set", "config.extraEnv.IMGPROC_RECONCILE_AFTER_SECONDS=30",
        "--set", "config.extraEnv.IMGPROC_RECONCILE_INTERVAL_SECONDS=5",
    )
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


def redis_cli(cluster: LiveCluster, release: Release, pod: str, *args: str, port: int = 6379) -> str:
    """redis-cli inside a Redis/sentinel pod (REDISCLI_AUTH is set there); '' on failure."""
    result = cluster.kubectl("exec", "-n", release.namespace, pod, "--", "redis-cli", "-p", str(port), "--raw",
                             *args, check=False, timeout=30)
    return result.stdout.strip() if result.returncode == 0 else ""


def named_master(cluster: LiveCluster, release: Release) -> str | None:
    """The pod the sentinels' majority names as master (its short name), None without one."""
    votes = []
    for i in range(3):
        answer = redis_cli(cluster, release, f"{release.name}-redis-sentinel-{i}",
                           "sentinel", "get-master-addr-by-name", "mymaster", port=26379)
        if answer:
            votes.append(answer.split()[0].split(".")[0])
    best = max(set(votes), key=votes.count, default=None)
    return best if best is not None and votes.count(best) >= 2 else None


def role(cluster: LiveCluster, release: Release, pod: str) -> str:
    return (redis_cli(cluster, release, pod, "role").splitlines() or [""])[0]


class Uploader(threading.Thread):
    """One cookie user uploading UPLOADS images one after the other; a 503 is retried after
    its Retry-After (capped at 1 s to keep the test short), every answer is counted."""

    def __init__(self, release: Release) -> None:
        super().__init__(daemon=True)
        self.release = release
        self.ids: list[int] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.without_retry_after = 0
        self.transport_errors = 0
        self.user = client(release)
        self.data = jpeg(640, 480)

    def run(self) -> None:
        deadline = time.monotonic() + BURST_SECONDS
        while len(self.ids) < UPLOADS and time.monotonic() < deadline:
            try:
                response = self.user.post("/api/newTask", files={"file": ("a.jpg", self.data, "image/jpeg")})
            except httpx.HTTPError:
                self.transport_errors += 1
                time.sleep(0.5)
                continue
            self.statuses[response.status_code] += 1
            if response.status_code == 200:
                self.ids.append(response.json()["task_id"])
                time.sleep(0.2)
            elif response.status_code == 503:
                retry_after = response.headers.get("retry-after")
                self.without_retry_after += not retry_after
                time.sleep(min(float(retry_after or 1), 1.0))
            else:
                time.sleep(0.5)


def database(cluster: LiveCluster, release: Release, sql: str) -> str:
    result = cluster.kubectl("exec", "-n", release.namespace, f"{release.name}-postgresql-0", "--",
                             "psql", "-U", "imgproc", "-d", "imgproc", "-tAc", sql, timeout=30)
    return result.stdout.strip()


def diagnostics(cluster: LiveCluster, release: Release) -> str:
    """Pods, and the logs of every Redis and sentinel container (the previous one too), for a failure."""
    out = [cluster.kubectl("get", "pods", "-n", release.namespace, "-o", "wide", check=False).stdout]
    pods = cluster.get("pods", "-n", release.namespace, "-l", f"app.kubernetes.io/instance={release.name},"
                       "app.kubernetes.io/name=redis")["items"]
    for pod in pods:
        name = pod["metadata"]["name"]
        for previous in ("--previous=false", "--previous=true"):
            logs = cluster.kubectl("logs", "-n", release.namespace, name, previous, "--tail=80", check=False)
            out.append(f"--- {name} {previous}\n{logs.stdout}{logs.stderr}")
    return "\n".join(out)


def autoscaler_ready(cluster: LiveCluster, release: Release) -> bool:
    (scaler,) = cluster.get("workerautoscalers", "-n", release.namespace)["items"]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in scaler.get("status", {}).get("conditions", []))


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

    uploader = Uploader(release)
    started = time.monotonic()
    uploader.start()
    deadline = time.monotonic() + 120
    while len(uploader.ids) < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(uploader.ids) >= 10, dict(uploader.statuses)
    deleted_at = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", release.namespace, master0, "--wait=false")
    promoted_at = None
    with timed("Redis failover (pod deleted -> replica named)"):
        while time.monotonic() < deleted_at + 120:
            if named_master(cluster, release) == replica0:
                promoted_at = time.monotonic()
                break
            time.sleep(0.3)
    assert promoted_at is not None, "the sentinels never promoted the replica"
    uploader.join(timeout=BURST_SECONDS + 30)
    assert not uploader.is_alive()
    burst_seconds = time.monotonic() - started

    # The ledger: every accepted task ends completed or failed (with a reason), bounded.
    final: dict[int, dict] = {}
    pending = list(uploader.ids)
    deadline = time.monotonic() + 180
    user = uploader.user  # the uploader's cookie: its tasks
    try:
        while pending and time.monotonic() < deadline:
            for task_id in list(pending):
                try:
                    status = user.get(f"/api/isReady/{task_id}").json()
                except (httpx.HTTPError, ValueError):
                    continue
                if status["status"] in TERMINAL:
                    final[task_id] = status
                    pending.remove(task_id)
            time.sleep(0.5)
    finally:
        user.close()
    completed = sum(1 for s in final.values() if s["status"] == "completed")
    failed = {i: s["error"] for i, s in final.items() if s["status"] == "failed"}
    rows, runs_again = database(cluster, release, "SELECT count(*), count(*) FILTER (WHERE attempts > 1) FROM tasks"
                                ).split("|")
    logs = cluster.kubectl("logs", "-n", release.namespace, "-l", "app.kubernetes.io/component=api",
                           "--tail=-1", check=False).stdout
    reconciled = sum(int(line.split("re-enqueued ")[1].split()[0]) for line in logs.splitlines()
                     if "re-enqueued " in line and "stale task" in line)

    # The old master's pod is back, as a replica of the promoted one.
    deadline = time.monotonic() + 120
    while role(cluster, release, master0) != "slave" and time.monotonic() < deadline:
        time.sleep(1)
    rejoined = role(cluster, release, master0)
    # The operator reads the queue from the promoted master (through the sentinels).
    deadline = time.monotonic() + 60
    while not autoscaler_ready(cluster, release) and time.monotonic() < deadline:
        time.sleep(1)
    scaler_ready = autoscaler_ready(cluster, release)

    figures = {
        "accepted": len(uploader.ids), "completed": completed, "failed": len(failed), "lost": len(pending),
        "duplicated": int(rows) - len(set(uploader.ids)), "redelivered": int(runs_again), "reconciled": reconciled,
        "served_503": uploader.statuses[503], "answers": dict(uploader.statuses),
        "seconds_without_master": round(promoted_at - deleted_at, 1), "burst_seconds": round(burst_seconds, 1),
    }
    print("redis failover ledger:", figures)
    assert figures["lost"] == 0, pending
    assert completed + len(failed) == len(uploader.ids)
    assert all(failed.values()), failed  # failed only with a reason
    assert figures["duplicated"] == 0, "a refused upload left a row, or a task was stored twice"
    assert len(set(uploader.ids)) == len(uploader.ids)
    assert set(uploader.statuses) <= {200, 503}, uploader.statuses  # never a 500 (nor 502/504)
    assert uploader.without_retry_after == 0 and uploader.transport_errors == 0
    assert rejoined == "slave", f"the old master's pod did not rejoin as a replica: role {rejoined!r}"
    assert named_master(cluster, release) == replica0
    assert scaler_ready, "the WorkerAutoscaler did not read the queue from the new master"
