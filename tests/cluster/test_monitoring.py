"""The chart's monitoring on real pods and a real Prometheus: a release with metrics, both
monitors, the PrometheusRule and the dashboard on; Prometheus (Debian's, on the host, its targets
listed from the cluster as Kubernetes service discovery would: tests/fixtures/prometheus.py) runs
the scrape jobs and rules the Prometheus Operator would make of the objects the release created
(tests/support/charts/prometheus_operator.py).
Every component is scraped through its monitor, every dashboard panel has data, and the backlog
alert goes pending → firing while the workers are held at zero, and resolves once they are back.

The tests share one release and Prometheus and run in file order."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import CHART, LiveCluster, Release
from tests.fixtures.kube import locate_tools
from tests.fixtures.prometheus import KubernetesTargets, Prometheus, start_prometheus
from tests.support.charts.prometheus_operator import PROMETHEUS_OPERATOR_CRDS, scrape_configs
from tests.support.cluster import client
from tests.support.images import jpeg
from tests.support.tasks import upload, upload_accepted, wait_for_terminal
from tests.support.waiting import wait_until

SCRAPE, SCRAPE_SECONDS = "5s", 5
DASHBOARD = CHART / "dashboards" / "imgproc.json"
PAUSED_REPLICAS = "autoscaling.imgproc.dev/paused-replicas"
# Panels that show only what this run does not cause: their series exist once it happens.
QUIET_PANELS = {
    "5xx ratio by route": "no request fails with a 5xx",
    "Tasks requeued by the API": "no worker dies mid-task",
    "Storage errors": "the store does not fail",
    "Read replica lag (as the API measures it)": "no read replica (postgresql.readReplicas)",
}


@pytest.fixture(scope="module")
def release(live_cluster: LiveCluster) -> Iterator[Release]:
    # The monitors' kinds must exist before the chart's objects of them can be created.
    tools = locate_tools()
    assert tools is not None, "scripts/k8s-tools --print failed"
    crds = tools / PROMETHEUS_OPERATOR_CRDS
    live_cluster.kubectl("apply", "--server-side", "-f", str(crds), timeout=120)
    monitors = {"enabled": True, "interval": SCRAPE, "scrapeTimeout": "4s"}
    metrics = {
        "enabled": True,
        "serviceMonitor": monitors,
        "podMonitor": monitors,
        # The backlog alert within the test's bounds: a minute of backlog, then 20 s pending.
        "prometheusRule": {"enabled": True, "alerts": {"backlogStalled": {"window": "1m", "for": "20s"}}},
        "dashboard": {"enabled": True},
    }
    installed = live_cluster.install(
        live_cluster.new_namespace("monitoring"),
        "--set-json",
        f"metrics={json.dumps(metrics)}",
        "--set",
        "api.replicaCount=1",
        "--set",
        "autoscaler.cooldownPeriod=15",
    )
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


@pytest.fixture(scope="module")
def prometheus(release: Release, live_cluster: LiveCluster, tmp_path_factory) -> Iterator[Prometheus]:
    namespace = release.namespace
    directory = tmp_path_factory.mktemp("prometheus")
    discovery = KubernetesTargets(
        directory / "targets", lambda kinds: live_cluster.get(kinds, "-n", namespace)["items"]
    )
    monitors = [
        *live_cluster.get("servicemonitors", "-n", namespace)["items"],
        *live_cluster.get("podmonitors", "-n", namespace)["items"],
    ]
    jobs = [job for monitor in monitors for job in scrape_configs(monitor, discovery.files)]
    (rule,) = live_cluster.get("prometheusrules", "-n", namespace)["items"]
    try:
        server = start_prometheus(directory, jobs, rule["spec"]["groups"], interval=SCRAPE)
        yield server
        server.stop()
    finally:
        discovery.stop()


def worker_autoscaler(release: Release) -> str:
    return f"{release.name}-worker" if release.name == "imgproc" else f"{release.name}-imgproc-worker"


def test_every_component_is_scraped_through_its_monitor(release: Release, prometheus: Prometheus):
    def all_up() -> dict[str, set[str]] | None:
        components: dict[str, set[str]] = {}
        for target in prometheus.targets():
            labels = target["labels"]
            components.setdefault(labels.get("app_kubernetes_io_component", "?"), set()).add(target["health"])
        return components if components and all(health == {"up"} for health in components.values()) else None

    components = wait_until(all_up, timeout=90, what="every target up")
    assert set(components) == {"api", "worker", "operator"}
    up = prometheus.query(f'up{{namespace="{release.namespace}",app_kubernetes_io_instance="{release.name}"}}')
    assert {sample["metric"]["app_kubernetes_io_component"] for sample in up} == {"api", "worker", "operator"}


def panel_queries(release: Release) -> dict[str, list[str]]:
    board = json.loads(DASHBOARD.read_text())
    substitutions = {"$namespace": release.namespace, "$release": release.name, "$__rate_interval": "1m"}
    queries: dict[str, list[str]] = {}
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            queries.setdefault(panel["title"], []).append(expr)
    return queries


def test_every_dashboard_panel_has_data(release: Release, prometheus: Prometheus):
    with client(release) as user:
        ids = [upload_accepted(user, jpeg(1600, 1200)) for _ in range(3)]
        refused = upload(user, b"not an image at all", name="notes.txt")  # a refusal, counted by reason
        assert refused.status_code in (415, 422), refused.text
        assert {wait_for_terminal(user, task_id, timeout=180)["status"] for task_id in ids} == {"completed"}
    queries = panel_queries(release)
    assert set(QUIET_PANELS) <= set(queries), "a quiet panel is no longer on the dashboard"

    def empty_panels() -> list[str]:
        return [
            title
            for title, exprs in queries.items()
            if title not in QUIET_PANELS and not any(prometheus.query(expr) for expr in exprs)
        ]

    deadline = time.monotonic() + 90  # two scrapes at least for every rate()
    while (empty := empty_panels()) and time.monotonic() < deadline:
        time.sleep(SCRAPE_SECONDS)
    assert not empty, f"panels without data: {empty}"


def test_the_backlog_alert_fires_with_workers_held_at_zero_and_resolves(
    release: Release, live_cluster: LiveCluster, prometheus: Prometheus
):
    autoscaler = ("workerautoscaler", worker_autoscaler(release), "-n", release.namespace)
    live_cluster.kubectl("annotate", *autoscaler, f"{PAUSED_REPLICAS}=0", "--overwrite")
    try:
        wait_until(lambda: not release.pods("worker"), timeout=120, interval=1, what="no worker pod")
        with client(release) as user:
            ids = [upload_accepted(user, jpeg(800, 600)) for _ in range(4)]
            states: list[tuple[float, str]] = []
            started = time.monotonic()
            while time.monotonic() - started < 240:
                alerts = prometheus.alerts("ImgprocBacklogStalled")
                state = alerts[0]["state"] if alerts else "inactive"
                if not states or states[-1][1] != state:
                    states.append((round(time.monotonic() - started, 1), state))
                if state == "firing":
                    break
                time.sleep(1)
            print(f"ImgprocBacklogStalled with the workers held at zero (s, state): {states}")
            assert [state for _, state in states] == ["inactive", "pending", "firing"], states
            (firing,) = prometheus.alerts("ImgprocBacklogStalled")
            assert firing["labels"]["severity"] == "critical" and float(firing["value"]) == len(ids)
            assert firing["annotations"]["runbook_url"].endswith("#imgprocbacklogstalled")

            live_cluster.kubectl("annotate", *autoscaler, f"{PAUSED_REPLICAS}-")
            assert {wait_for_terminal(user, task_id, timeout=240)["status"] for task_id in ids} == {"completed"}
        wait_until(
            lambda: not prometheus.alerts("ImgprocBacklogStalled"), timeout=120, interval=1, what="the alert resolved"
        )
        print(f"resolved {time.monotonic() - started:.0f} s after the burst")
    finally:
        live_cluster.kubectl("annotate", *autoscaler, f"{PAUSED_REPLICAS}-", check=False)
