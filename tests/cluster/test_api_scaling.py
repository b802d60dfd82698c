"""API replicas behind the load balancer, on real pods: the chart's HorizontalPodAutoscaler reads
CPU from the cluster's metrics-server and takes the API from 1 to 2+ pods under a bounded load
through the ingress (Traefik), then back to 1, and not one request fails while pods are added or
removed; the same release is also served through a Gateway API HTTPRoute attached to the
cluster's Gateway (Traefik's kubernetesGateway provider), where the REST flow works.

One release for both (ingress host and gateway host differ); the tests run in file order.
"""

from __future__ import annotations

import collections
import datetime
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.fixtures.cluster import LiveCluster, Release, timed
from tests.support.cluster import client, endpoints
from tests.support.images import decode, jpeg
from tests.support.tasks import upload_accepted, wait_for_terminal

MIN_REPLICAS, MAX_REPLICAS = 1, 3
# Of the API container's CPU request (50m in k8s/values-local.yaml): a few busy clients are far
# above it, one slow client far below.
TARGET_CPU_PERCENT = 50
LOAD_CLIENTS = 4
LOAD_SECONDS = 60  # the bound of the busy phase
CALM_SECONDS = 150  # the bound of the scale-down phase (a slow client keeps asking meanwhile)
# The slow client's pause between requests. An idle API pod already sits at 12-18 % (probes; the
# HPA's first reading in three runs); two pods go back to one only at <= 25 % on average, so the
# calm load must add well under 8 % per pod:
# at 0.3 s (~3 requests/s) it held two pods at 29-32 % for the whole phase.
CALM_PAUSE_SECONDS = 1.5
# Short windows so the whole cycle fits the test's bounds (defaults: 0 s up, 300 s down).
BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]},
    "scaleDown": {"stabilizationWindowSeconds": 15, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]},
}


@pytest.fixture(scope="module")
def release(live_cluster: LiveCluster, tmp_path_factory) -> Iterator[Release]:
    namespace = live_cluster.new_namespace("apiscale")
    values = tmp_path_factory.mktemp("apiscale") / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "api": {
                    "autoscaling": {
                        "enabled": True,
                        "minReplicas": MIN_REPLICAS,
                        "maxReplicas": MAX_REPLICAS,
                        "targetCPUUtilizationPercentage": TARGET_CPU_PERCENT,
                        "behavior": BEHAVIOR,
                    }
                },
                # The cluster's Gateway (k8s/cluster/gateway.yaml), under a host of its own.
                "gateway": {
                    "enabled": True,
                    "hostnames": [f"gw-{namespace}.imgproc.test"],
                    "parentRefs": [{"name": "traefik", "namespace": "traefik", "sectionName": "web"}],
                },
                # The load is a handful of users sending far more than a person would: the per-user
                # upload limit (120/min) would answer 429 and measure the limiter instead of the HPA.
                "config": {
                    "extraEnv": {
                        "IMGPROC_UPLOADS_PER_MINUTE_PER_USER": "100000",
                        "IMGPROC_MAX_PENDING_TASKS_PER_USER": "10000",
                    }
                },
            }
        )
    )
    installed = live_cluster.install(namespace, "-f", str(values))
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


def _seconds(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_metrics_server_serves_the_resource_metrics_api(live_cluster: LiveCluster):
    """scripts/cluster up waits for the APIService; kubectl top answers with the node's and the
    add-ons' figures (scraped from the kubelet's /metrics/resource)."""
    service = live_cluster.get("apiservice", "v1beta1.metrics.k8s.io")
    available = next(c for c in service["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "True", service["status"]
    (pod,) = live_cluster.get("pods", "-n", "kube-system", "-l", "k8s-app=metrics-server")["items"]
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    created = _seconds(pod["metadata"]["creationTimestamp"])
    print(
        f"metrics-server: pod created -> Ready {_seconds(ready['lastTransitionTime']) - created:.0f} s, "
        f"-> APIService Available {_seconds(available['lastTransitionTime']) - created:.0f} s "
        f"(1 s timestamps)"
    )
    nodes = live_cluster.kubectl("top", "nodes")
    assert "CPU(cores)" in nodes.stdout and live_cluster.get("nodes")["items"][0]["metadata"]["name"] in nodes.stdout
    deadline = time.monotonic() + 60
    while True:  # pods are listed once metrics-server has two samples of them (a rate)
        pods = live_cluster.kubectl("top", "pods", "-n", "kube-system", check=False)
        if "coredns" in pods.stdout or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "coredns" in pods.stdout, pods.stdout + pods.stderr


def api_name(release: Release) -> str:
    return endpoints(release)["api"][0]


class Load:
    """Cookie users sending a mix of uploads, status polls, task lists and health checks through
    one address, counting every answer; bounded by a stop event and each phase's deadline."""

    def __init__(self, release: Release, host: str) -> None:
        self.release, self.host = release, host
        self.codes: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.sent = 0
        self.tasks: list[tuple[httpx.Client, int]] = []
        self.users: list[httpx.Client] = []
        self.lock = threading.Lock()
        self.image = jpeg(640, 480)

    def user(self) -> httpx.Client:
        return httpx.Client(base_url=self.release.url, headers={"Host": self.host}, timeout=30)

    def _record(self, what: str, response: httpx.Response | None, error: Exception | None = None) -> None:
        with self.lock:
            self.sent += 1
            if error is not None:
                self.codes[f"{what} {type(error).__name__}"] += 1
                self.failures.append(f"{what}: {error!r}")
                return
            self.codes[f"{what} {response.status_code}"] += 1
            if response.status_code == 429 and response.headers.get("Retry-After"):
                return  # a documented refusal, not a failure (the limits are raised: none expected)
            if response.status_code != 200:
                self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")

    def run(self, stop: threading.Event, deadline: float, pause: float, uploads_every: int) -> None:
        user = self.user()  # closed by check_tasks (it polls the tasks with the same cookie)
        with self.lock:
            self.users.append(user)
        n, last_task = 0, None
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            what = (
                "upload"
                if n % uploads_every == 0
                else "status"
                if last_task is not None and n % 3 == 0
                else "list"
                if n % 2 == 0
                else "health"
            )
            try:
                response = self._send(user, what, last_task)
            except httpx.HTTPError as error:
                self._record(what, None, error)
            else:
                self._record(what, response)
                if what == "upload" and response.status_code == 200:
                    last_task = response.json()["task_id"]
                    with self.lock:
                        self.tasks.append((user, last_task))
            if pause:
                time.sleep(pause)

    def _send(self, user: httpx.Client, what: str, task_id: int | None) -> httpx.Response:
        if what == "upload":
            return user.post("/api/newTask", files={"file": ("load.jpg", self.image, "image/jpeg")})
        if what == "status":
            return user.get(f"/api/isReady/{task_id}")
        if what == "list":
            return user.get("/api/tasks", params={"limit": 20})
        return user.get("/")

    def check_tasks(self) -> None:
        """Every accepted upload ends completed, seen by its own user."""
        for user, task_id in self.tasks:
            status = wait_for_terminal(user, task_id, timeout=180)
            if status["status"] != "completed":
                self.failures.append(f"task {task_id}: {status}")
        for user in self.users:
            user.close()


def test_the_hpa_scales_the_api_under_load_through_the_ingress_without_a_failed_request(
    release: Release, live_cluster: LiveCluster
):
    name = api_name(release)
    started = time.monotonic()

    def state() -> tuple[int, int, int | None]:
        deployment = live_cluster.get("deployment", name, "-n", release.namespace)
        hpa = live_cluster.get("hpa", name, "-n", release.namespace)
        metrics = hpa["status"].get("currentMetrics") or []
        cpu = next(
            (m["resource"]["current"].get("averageUtilization") for m in metrics if m.get("type") == "Resource"), None
        )
        return deployment["spec"]["replicas"], deployment["status"].get("readyReplicas", 0), cpu

    timeline: list[tuple[float, int, int, int | None]] = []

    def observe() -> tuple[int, int, int | None]:
        replicas, ready, cpu = state()
        if not timeline or timeline[-1][1:3] != (replicas, ready) or (timeline[-1][3] is None) != (cpu is None):
            timeline.append((round(time.monotonic() - started, 1), replicas, ready, cpu))
        return replicas, ready, cpu

    # The HPA sees the pods' CPU once metrics-server has scraped them twice (a rate).
    with timed("HPA: first CPU metrics"):
        deadline = time.monotonic() + 180
        while observe()[2] is None and time.monotonic() < deadline:
            time.sleep(2)
    first_metrics = time.monotonic() - started
    assert timeline[-1][3] is not None, f"the HPA never saw CPU metrics: {timeline}"
    assert timeline[-1][1] == MIN_REPLICAS, timeline
    top = live_cluster.kubectl("top", "pods", "-n", release.namespace, "-l", "app.kubernetes.io/component=api")
    assert name in top.stdout, top.stdout

    # Busy: a few clients as fast as they can, through the ingress, until a second pod has been
    # ready for a while (so it served requests) or the bound.
    load = Load(release, release.host)
    stop = threading.Event()
    busy_started = time.monotonic()
    senders = [
        threading.Thread(target=load.run, args=(stop, busy_started + LOAD_SECONDS, 0, 5)) for _ in range(LOAD_CLIENTS)
    ]
    for sender in senders:
        sender.start()
    ready_since = None
    while time.monotonic() < busy_started + LOAD_SECONDS:
        replicas, ready, _ = observe()
        if ready >= 2 and ready_since is None:
            ready_since = time.monotonic()
        if ready_since is not None and time.monotonic() - ready_since > 10:
            break
        time.sleep(1)
    stop.set()
    busy = time.monotonic() - busy_started
    for sender in senders:
        sender.join(timeout=60)
    scale_up = next((t for t, replicas, _, _ in timeline if replicas > MIN_REPLICAS), None)
    peak = max(replicas for _, replicas, _, _ in timeline)
    assert scale_up is not None, f"the HPA did not scale the API up: {timeline}"

    # Calm: one slow client keeps asking while the HPA removes the extra pods again.
    calm = Load(release, release.host)
    stop = threading.Event()
    calm_started = time.monotonic()
    slow = threading.Thread(target=calm.run, args=(stop, calm_started + CALM_SECONDS, CALM_PAUSE_SECONDS, 10))
    slow.start()
    while time.monotonic() < calm_started + CALM_SECONDS:
        replicas, ready, _ = observe()
        if replicas == ready == MIN_REPLICAS:
            break
        time.sleep(2)
    time.sleep(10)  # the last removed pod's shutdown (preStop sleep, uvicorn drain) under requests
    stop.set()
    slow.join(timeout=60)
    observe()
    load.check_tasks()
    calm.check_tasks()
    back_at_min = next(
        (t for t, replicas, ready, _ in timeline if t > scale_up and replicas == ready == MIN_REPLICAS), None
    )

    print(f"HPA timeline (s since install, replicas, ready, CPU % of request): {timeline}")
    print(
        f"HPA: first CPU metrics {first_metrics:.1f} s after install; load began at "
        f"{busy_started - started:.1f} s; first scale-up at {scale_up:.1f} s "
        f"({scale_up - (busy_started - started):.1f} s into the load); peak {peak} replicas; "
        f"busy phase {busy:.1f} s; back at {MIN_REPLICAS} at "
        f"{back_at_min if back_at_min is None else f'{back_at_min:.1f}'} s"
    )
    print(f"busy load: {load.sent} requests {dict(load.codes)}; calm load: {calm.sent} requests {dict(calm.codes)}")
    assert not load.failures, load.failures[:20]
    assert not calm.failures, calm.failures[:20]
    assert load.tasks and load.sent > 100, load.sent
    # The added pods really joined (ready behind the Service) before they were removed again.
    assert any(ready >= 2 for _, _, ready, _ in timeline), f"no second API pod became ready: {timeline}"
    assert back_at_min is not None, f"the API did not return to {MIN_REPLICAS} replica(s): {timeline}"


def test_the_rest_flow_works_through_the_httproute(release: Release, live_cluster: LiveCluster):
    route = live_cluster.get("httproute", "-n", release.namespace)["items"]
    assert len(route) == 1, route
    # Traefik accepted the route on the cluster's Gateway and resolved its backends.
    (parent,) = route[0]["status"]["parents"]
    assert parent["parentRef"]["name"] == "traefik" and parent["controllerName"] == "traefik.io/gateway-controller"
    conditions = {c["type"]: c["status"] for c in parent["conditions"]}
    assert conditions.get("Accepted") == "True", parent
    host = route[0]["spec"]["hostnames"][0]
    via_gateway = Release(release.cluster, release.name, release.namespace, host)
    with client(via_gateway) as alice, client(via_gateway) as bob:
        assert alice.get("/").json() == {"status": "healthy", "message": "Image processing service is running"}
        task_id = upload_accepted(alice, jpeg(1600, 1200, orientation=6))
        status = wait_for_terminal(alice, task_id, timeout=120)
        assert status["status"] == "completed", status
        assert json.loads(status["metadata"])["processed_size"] > 0
        result = alice.get(f"/api/tasks/{task_id}/result")
        assert result.status_code == 200 and decode(result.content).size == (450, 600)
        assert bob.get(f"/api/isReady/{task_id}").status_code == 404
        assert alice.get("/openapi.json").status_code == 200
        # Flower answers under /flower/ (its own basic auth).
        flower = alice.get("/flower/")
        assert flower.status_code == 401 and "Basic" in flower.headers.get("WWW-Authenticate", ""), flower
        # The webhook: answered by Traefik itself (no backends), never by the app (401 unsigned).
        for path in ("/api/webhook/task-complete", "/api/webhook/", "/api/webhook"):
            response = alice.post(path, content=b"{}", headers={"Content-Type": "application/json"})
            assert response.status_code >= 500 and "detail" not in response.text, (
                path,
                response.status_code,
                response.text,
            )
        # Internal paths stay internal, as through the Ingress.
        assert alice.get("/readyz").status_code == 404
    # Hosts the route does not name get Traefik's 404.
    other = httpx.get(f"{release.url}/", headers={"Host": f"nobody-{release.namespace}.imgproc.test"}, timeout=10)
    assert other.status_code == 404
