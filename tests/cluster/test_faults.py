"""Faults on real pods (#11): each scenario sends a bounded burst of uploads through the ingress
as a client that follows the contract (tests.support.cluster.Burst), injects one fault with
kubectl, and ends with the ledger (tests.fixtures.ledger): accepted = completed + failed with a
reason, 0 lost, 0 duplicated, no 5xx other than 503 with Retry-After. Each ledger becomes a row
of `make reliability-cluster`.

One release for the module, with short timers so that recoveries land within the tests' bounds
(production keeps the chart's defaults; the same mechanisms run, only sooner):
- visibility timeout 15 s (task hard limit 10 s, worker grace 20 s): a task whose worker died
  without rejecting its message is delivered again after 15 s instead of an hour;
- the reconciler re-enqueues tasks unfinished after 20 s (production: 600 s);
- Redis without a volume (emptyDir): a deleted Redis pod comes back empty, the harder case
  (the default, with a volume, is covered in test_chart.py);
- a worker with one pool process and a 256 MiB memory limit, and 2 attempts per task, for the
  out-of-memory scenario;
- the operator adds one worker per polling interval, up to 6 (the local values stop at 3, one
  step), so that the operator scenario deletes it in the middle of a scale-up with room to go on.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.fixtures.cluster import LiveCluster, Release
from tests.fixtures.ledger import ledger
from tests.support.cluster import Burst, client
from tests.support.images import encode, jpeg, photo
from tests.support.tasks import TERMINAL, upload_accepted, wait_for_terminal
from tests.support.waiting import wait_until

MAX_ATTEMPTS = 2
WORKER_MEMORY_LIMIT = "256Mi"

FAULT_VALUES = (
    "--set",
    "config.taskSoftTimeLimit=8",
    "--set",
    "config.taskTimeLimit=10",
    "--set",
    "config.visibilityTimeout=15",
    "--set",
    "worker.terminationGracePeriodSeconds=20",
    "--set",
    f"config.maxTaskAttempts={MAX_ATTEMPTS}",
    "--set-string",
    "config.extraEnv.IMGPROC_UNACKED_RESTORE_INTERVAL=2",
    "--set-string",
    "config.extraEnv.IMGPROC_UNACKED_RESTORE_THROTTLE=2",
    "--set-string",
    "config.extraEnv.IMGPROC_RECONCILE_AFTER_SECONDS=20",
    "--set-string",
    "config.extraEnv.IMGPROC_RECONCILE_INTERVAL_SECONDS=5",
    "--set",
    "redis.master.persistence.enabled=false",
    "--set",
    "worker.concurrency=1",
    "--set",
    "worker.resources.requests.memory=128Mi",
    "--set",
    f"worker.resources.limits.memory={WORKER_MEMORY_LIMIT}",
    "--set",
    "autoscaler.scaleDown.stabilizationWindowSeconds=15",
    "--set",
    "autoscaler.cooldownPeriod=15",
    "--set",
    "autoscaler.maxReplicaCount=6",
    "--set",
    "autoscaler.scaleUp.maxStep=1",
)


@pytest.fixture(scope="module")
def release(live_cluster: LiveCluster) -> Iterator[Release]:
    installed = live_cluster.install(live_cluster.new_namespace("faults"), *FAULT_VALUES)
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    """12 MP photos (tasks that take the worker a while) and 1080p ones, mixed."""
    return [photo(4000, 3000), photo(1920, 1080)]


def processing_seen(burst: Burst, timeout: float = 60) -> None:
    """Waits until one of the burst's tasks is being worked on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for user, task_id in list(burst.accepted):
            if user.get(f"/api/isReady/{task_id}").json()["status"] == "processing":
                return
        time.sleep(0.2)
    raise AssertionError("no task of the burst started within the bound")


def oldest(release: Release, component: str) -> str:
    pods = sorted(release.pods(component), key=lambda p: p["metadata"]["creationTimestamp"])
    assert pods, f"no {component} pod"
    return pods[0]["metadata"]["name"]


def wait_ready(release: Release, component: str, since: float, count: int = 1, timeout: float = 180) -> float:
    """Seconds from `since` (time.monotonic()) until `count` pods of the component that are not
    terminating are Ready."""
    while time.monotonic() - since < timeout:
        ready = [
            p
            for p in release.pods(component)
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        if len(ready) >= count:
            return time.monotonic() - since
        time.sleep(0.5)
    raise AssertionError(f"{component} not Ready again within {timeout}s")


def delete_pod(live_cluster: LiveCluster, release: Release, pod: str) -> float:
    """Deletes the pod without waiting for it to go; the time.monotonic() from before the delete,
    so that "Ready again N s after the delete" includes the old pod's termination."""
    deleted = time.monotonic()
    live_cluster.kubectl("delete", "pod", "-n", release.namespace, pod, "--wait=false")
    return deleted


def test_a_worker_pod_force_deleted_mid_task(release: Release, live_cluster: LiveCluster, images: list[bytes]):
    """--grace-period=0 --force removes the pod object at once; the kubelet still stops the
    container with its minimum grace (about 2 s), so a task of a few hundred milliseconds
    usually finishes, and one that does not is delivered again (next test). Either way: nothing
    lost, nothing twice."""
    source = release.since_now()
    with Burst(release, images, users=3, count=5) as burst:
        processing_seen(burst)
        victim = oldest(release, "worker")
        live_cluster.kubectl("delete", "pod", "-n", release.namespace, victim, "--grace-period=0", "--force")
    counts = burst.ledger(source, "cluster: worker pod force-deleted mid-task")
    assert counts["completed"] == counts["accepted"]


def test_worker_containers_killed_mid_task_are_recovered(
    release: Release, live_cluster: LiveCluster, images: list[bytes]
):
    """SIGKILL to every process of every worker container, from the node, while tasks run (a
    node crash, the kernel's OOM killer on a whole container): nobody rejects the messages;
    they stay unacknowledged in Redis until the visibility timeout (15 s here) and are
    delivered again; the kubelet restarts the containers."""
    source = release.since_now()

    def kill(pids: list[int]) -> int:
        killed = 0
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def worker_pids() -> list[int]:
        return [pid for pod in release.pods("worker") for pid in release.container_pids(pod)]

    # The previous test force-deleted a worker pod: its replacement may still be starting, with no
    # process to find yet. Wait for every worker pod's containers, then find the processes before
    # the burst, so that the kill follows the first sight of a running task at once (looking them
    # up only after it once let that run finish in between). Processes started since (a pod the
    # burst scaled up, a container that was still starting) are found and killed next.
    wait_until(
        lambda: (pods := release.pods("worker")) and all(release.container_pids(pod) for pod in pods),
        timeout=120,
        interval=1,
        what="every worker pod's containers running",
    )
    known = worker_pids()
    with Burst(release, images[0], users=3, count=4) as burst:
        processing_seen(burst)
        killed = kill(known)
        killed += kill([pid for pid in worker_pids() if pid not in known])
        assert killed, "every worker process had gone before the kill"
    counts = burst.ledger(source, "cluster: worker containers SIGKILLed mid-task")
    assert counts["completed"] == counts["accepted"]
    assert counts["redelivered"] >= 1, "no task was cut: the kill landed between tasks"


def test_a_worker_pod_deleted_normally_finishes_its_task(
    release: Release, live_cluster: LiveCluster, images: list[bytes]
):
    """A normal delete is a scale-down or a drain: SIGTERM, Celery's warm shutdown finishes the
    running task within terminationGracePeriodSeconds (longer than the hard time limit, checked
    at render time), and nothing runs twice."""
    source = release.since_now()
    with Burst(release, images, users=3, count=5) as burst:
        processing_seen(burst)
        victim = oldest(release, "worker")
        live_cluster.kubectl("delete", "pod", "-n", release.namespace, victim, "--wait=false")
    counts = burst.ledger(source, "cluster: worker pod deleted (warm shutdown)")
    assert counts["completed"] == counts["accepted"]
    assert counts["redelivered"] == 0, "a task of the warm-shut-down pod ran twice"


@pytest.mark.parametrize(
    ("component", "scenario"),
    [("master", "Redis pod deleted (no volume)"), ("primary", "PostgreSQL pod deleted")],
    ids=["redis", "postgresql"],
)
def test_a_stateful_pod_deleted(
    release: Release, live_cluster: LiveCluster, images: list[bytes], component: str, scenario: str
):
    """The StatefulSet brings the pod back; meanwhile the API answers 503 with Retry-After and
    the workers' reports wait (retried). Redis comes back empty (no volume here): the queued
    tasks that vanished with it are re-enqueued by the reconciler from the database.
    PostgreSQL comes back on its volume."""
    source = release.since_now()
    with Burst(release, images, users=3, count=6, seconds=180) as burst:
        processing_seen(burst)
        deleted = delete_pod(live_cluster, release, oldest(release, component))
        back = wait_ready(release, component, since=deleted)
    print(f"{component} Ready again {back:.1f} s after the delete")
    counts = burst.ledger(source, f"cluster: {scenario}")
    assert counts["completed"] == counts["accepted"]


def test_an_api_pod_deleted_while_uploads_are_in_flight(release: Release, live_cluster: LiveCluster):
    """Two API replicas behind Traefik: the deleted one leaves the endpoints during its preStop
    sleep and finishes what it has; the client never sees a failure."""
    assert len(release.pods("api")) >= 2
    source = release.since_now()
    with Burst(release, jpeg(1280, 960), users=4, count=25, pause=0.05) as burst:
        wait_until(
            lambda: len(burst.accepted) >= 8 or burst.done,
            timeout=60,
            interval=0.05,
            what="uploads of the burst accepted",
        )
        assert not burst.done, "the burst ended before the delete"  # 100 uploads: most still to come
        in_flight_at_delete = len(burst.accepted)
        delete_pod(live_cluster, release, oldest(release, "api"))
    counts = burst.ledger(source, "cluster: API pod deleted during uploads")
    print(f"API pod deleted after {in_flight_at_delete} of 100 uploads were accepted")
    assert counts["completed"] == counts["accepted"] == 100
    assert burst.transport_errors == 0


def test_the_operator_pod_deleted_in_the_middle_of_a_scale_up(
    release: Release, live_cluster: LiveCluster, images: list[bytes]
):
    """kopf runs one operator replica (Recreate): its replacement picks the WorkerAutoscaler up
    again and the scale-up goes on; the workers are back at the minimum once drained."""
    worker = f"{release.name}-worker" if release.name == "imgproc" else f"{release.name}-imgproc-worker"

    def replicas() -> int:
        return live_cluster.get("deployment", worker, "-n", release.namespace)["spec"]["replicas"]

    def load() -> int:
        status = live_cluster.get("workerautoscaler", worker, "-n", release.namespace).get("status", {})
        return status.get("backlog", 0) + status.get("inFlight", 0)

    spec = live_cluster.get("workerautoscaler", worker, "-n", release.namespace)["spec"]
    minimum, maximum = spec["minReplicaCount"], spec["maxReplicaCount"]
    deadline = time.monotonic() + 120  # the earlier scenarios' scale-up winds down first
    while replicas() != minimum and time.monotonic() < deadline:
        time.sleep(1)
    assert replicas() == minimum, "the workers did not return to the minimum before the scenario"
    source = release.since_now()
    # Ten users at once: uploads outpace the workers, so the queue outlasts the replacement.
    with Burst(release, images[0], users=10, count=12, seconds=180) as burst:
        deadline = time.monotonic() + 60
        while replicas() == minimum and time.monotonic() < deadline:
            time.sleep(0.3)
        assert replicas() > minimum, "no scale-up began"
        at_delete = replicas()
        assert at_delete < maximum, f"the scale-up reached the maximum ({maximum}) before the delete"
        old = oldest(release, "operator")
        deleted = delete_pod(live_cluster, release, old)
        back = wait_ready(release, "operator", since=deleted)
        (replacement,) = [p["metadata"]["name"] for p in release.pods("operator") if p["metadata"]["name"] != old]
        peak, load_at_replacement = replicas(), load()
        # Until the uploads are sent and the queue is drained (the operator's own reading).
        while not (burst.done and load() == 0) and time.monotonic() - deleted < 120:
            peak = max(peak, replicas())
            time.sleep(0.5)
    counts = burst.ledger(source, "cluster: operator pod deleted mid scale-up")
    assert counts["completed"] == counts["accepted"]
    deadline = time.monotonic() + 120
    while replicas() != minimum and time.monotonic() < deadline:
        time.sleep(2)
    print(
        f"operator Ready again {back:.1f} s after the delete; workers at {at_delete} at the delete, load "
        f"{load_at_replacement} when the replacement was Ready, workers peaked at {peak}; back at {replicas()} "
        f"(minimum {minimum})"
    )
    assert peak > at_delete, "the scale-up did not go on after the operator's replacement"
    # ... by the replacement itself (the old pod might still poll once while it stops).
    log = live_cluster.kubectl("logs", "-n", release.namespace, replacement).stdout
    ups = [(int(a), int(b)) for a, b in re.findall(rf"deployment/{worker}: (\d+) -> (\d+)", log) if int(b) > int(a)]
    assert ups, f"no scale-up in the replacement operator's log:\n{log[-3000:]}"
    assert replicas() == minimum, "the new operator did not scale the drained workers back down"


class OomKills:
    """Out-of-memory kills in the worker containers since this object was made, counted per
    container instance (pod uid + container id) and read on the node (this test runs on the
    node). On cgroup v1, as here, the kernel kills the biggest process of the container, the pool
    process decoding the image, and the container runs on: its memory cgroup's oom_kill counts
    it. On cgroup v2 the kubelet makes the whole container the unit (memory.oom.group): it ends
    OOMKilled and is restarted as a new container; that termination counts as one kill of the
    old instance. The highest count seen per instance is kept, so a container whose cgroup
    went with a restart keeps what was read before (sample() while the scenario runs), one
    kill seen both ways is counted once, and what instances had before (earlier scenarios of
    the release, restarts) is left out."""

    def __init__(self, live_cluster: LiveCluster, release: Release) -> None:
        self.live_cluster, self.release = live_cluster, release
        self.seen: dict[str, int] = {}
        self.sample()
        self.before = dict(self.seen)

    def sample(self) -> None:
        pods = self.live_cluster.get(
            "pods",
            "-n",
            self.release.namespace,
            "-l",
            f"app.kubernetes.io/instance={self.release.name},app.kubernetes.io/component=worker",
        )["items"]
        for pod in pods:
            uid = pod["metadata"]["uid"]
            for status in pod["status"].get("containerStatuses", []):
                running = status.get("containerID", "").rpartition("//")[2]
                if running:
                    for path in glob.glob(
                        f"/sys/fs/cgroup/memory/kubepods*/**/pod{uid}/{running}/memory.oom_control", recursive=True
                    ):
                        fields = dict(line.split() for line in Path(path).read_text().splitlines())
                        self._saw(f"{uid}/{running}", int(fields.get("oom_kill", 0)))
                ended = status.get("lastState", {}).get("terminated") or {}
                if ended.get("reason") == "OOMKilled" and ended.get("containerID"):
                    self._saw(f"{uid}/{ended['containerID'].rpartition('//')[2]}", 1)

    def _saw(self, key: str, count: int) -> None:
        self.seen[key] = max(self.seen.get(key, 0), count)

    def since_start(self) -> int:
        self.sample()
        return sum(count - self.before.get(key, 0) for key, count in self.seen.items())


def test_a_worker_out_of_memory_fails_the_task_with_a_reason(release: Release, live_cluster: LiveCluster):
    """A purpose-made input: a 49 MP RGBA PNG (within the pixel limit, a few hundred KB on the
    wire) needs about 350 MB to decode and convert, more than the worker's 256 MiB. Each attempt
    dies by the kernel's OOM killer; after MAX_ATTEMPTS the task is failed with a reason instead
    of being run forever, and the worker serves the next upload."""
    bomb = encode(Image.new("RGBA", (7000, 7000), (9, 99, 199, 255)), "PNG")
    oom = OomKills(live_cluster, release)
    source = release.since_now()
    started = time.monotonic()
    with client(release) as user:
        bomb_id = upload_accepted(user, bomb, name="bomb.png")
        while (status := user.get(f"/api/isReady/{bomb_id}").json())["status"] not in TERMINAL:
            assert time.monotonic() - started < 180, f"the task did not finish within 180 s: {status}"
            oom.sample()  # each attempt's kill, before a restart could take its cgroup away
            time.sleep(0.5)
        after_bomb = time.monotonic() - started
        assert status["status"] == "failed", status
        assert "attempted" in (status.get("error") or ""), status
        kills = oom.since_start()
        assert kills >= MAX_ATTEMPTS, f"expected {MAX_ATTEMPTS} OOM kills, saw {kills}"
        # The worker is still (or again) serving.
        normal = upload_accepted(user, jpeg(1280, 960))
        assert wait_for_terminal(user, normal, timeout=120)["status"] == "completed"
        owners = {bomb_id: user, normal: user}
        counts = ledger(
            source,
            owners,
            [bomb_id, normal],
            name="cluster: worker out of memory",
            faults=kills,
            timeout=30,
            started=started,
        )
    print(f"out-of-memory task failed {after_bomb:.1f} s after its upload, {kills} OOM kills: {status['error']}")
    assert counts["failed"] == 1 and counts["completed"] == 1
