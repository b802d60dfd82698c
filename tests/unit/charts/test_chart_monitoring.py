"""metrics.*: the metrics port of API and worker pods, the API's metrics Service, the
ServiceMonitors, the PodMonitor, the PrometheusRule and the Grafana dashboard: rendered only when
switched on, selecting the pods and named ports they mean, refused by the schema when wrong,
reachable through the NetworkPolicies by the configured scraper only, and every query naming
only metrics the code defines. (The case "monitoring" of tests/support/charts/matrix.py also runs
through every generic check of test_chart_render; promtool: test_chart_alerts_promtool.py.)"""

from __future__ import annotations

import json
import re

import pytest

from app.core.metrics import UPLOAD_ROUTE
from tests.support.charts.manifests import Endpoint, by_kind, named, pod_templates, selector_matches, traffic_allowed
from tests.support.charts.matrix import CASES, deep_merge
from tests.support.charts.monitoring import (
    ALL_ON,
    PROMETHEUS,
    PROMETHEUS_PEER,
    SWITCHES,
    defined_families,
    defined_series,
    used_series,
)
from tests.support.charts.release import API, FULLNAME, OPERATOR, STRANGER, WORKER, release_pods
from tests.support.charts.rendering import CHART, NAMESPACE, ROOT

PORT = 9102  # values.yaml's metrics.port
METRICS_SERVICE = f"{API}-metrics"
DASHBOARD = CHART / "dashboards" / "imgproc.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
ON = {"metrics": {"enabled": True}}


def monitoring_objects(objects) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] in MONITORING_KINDS or o["metadata"]["name"] in (METRICS_SERVICE, f"{FULLNAME}-dashboard")
    ]


def container(objects, name: str) -> dict:
    return named(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def metrics_ports(c: dict) -> list[dict]:
    return [p for p in c.get("ports") or [] if p["name"] == "metrics"]


def rules(objects) -> dict[str, dict]:
    (rule,) = by_kind(objects, "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


# --- switches ---------------------------------------------------------------------------------


def test_everything_is_off_by_default(render):
    objects = render({})
    assert not monitoring_objects(objects)
    assert not metrics_ports(container(objects, API)) and not metrics_ports(container(objects, WORKER))
    assert "IMGPROC_METRICS_PORT" not in named(objects, "ConfigMap", FULLNAME)["data"]


@pytest.mark.parametrize("port", [PORT, 9300])
def test_metrics_enabled_opens_the_named_port_of_api_and_worker_pods_and_sets_it(render, port):
    objects = render({"metrics": {"enabled": True, "port": port}})
    assert named(objects, "ConfigMap", FULLNAME)["data"]["IMGPROC_METRICS_PORT"] == str(port)
    for name in (API, WORKER):
        expected = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        assert metrics_ports(container(objects, name)) == expected
    assert [p["containerPort"] for p in metrics_ports(container(objects, OPERATOR))] == [9100]  # its own, as before
    assert not metrics_ports(container(objects, f"{FULLNAME}-flower"))
    service = named(objects, "Service", METRICS_SERVICE)
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}]
    assert [o["kind"] for o in monitoring_objects(objects)] == ["Service"]  # the monitors are opt-in too


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        ("serviceMonitor", {("ServiceMonitor", API), ("ServiceMonitor", OPERATOR)}),
        ("podMonitor", {("PodMonitor", WORKER)}),
        ("prometheusRule", {("PrometheusRule", f"{FULLNAME}-alerts")}),
        ("dashboard", {("ConfigMap", f"{FULLNAME}-dashboard")}),
    ],
)
def test_each_switch_renders_its_objects_alone(render, switch, expected):
    objects = render({"metrics": {"enabled": True, switch: {"enabled": True}}})
    found = {(o["kind"], o["metadata"]["name"]) for o in monitoring_objects(objects)}
    assert found == expected | {("Service", METRICS_SERVICE)}


@pytest.mark.parametrize("switch", SWITCHES)
def test_a_switch_without_metrics_enabled_is_refused(helm_fails, switch):
    assert "need metrics.enabled" in helm_fails({"metrics": {switch: {"enabled": True}}})


def test_without_the_operator_only_the_apis_service_monitor_is_rendered(render):
    for values in ({"keda": {"enabled": True}}, {"autoscaler": {"enabled": False}}):
        objects = render(deep_merge(values, {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True}}}))
        assert [o["metadata"]["name"] for o in by_kind(objects, "ServiceMonitor")] == [API]


# --- the API's metrics Service, never routed --------------------------------------------------


def test_the_apis_metrics_stay_inside_the_cluster_whatever_publishes_the_api(render):
    values = deep_merge(
        ON,
        {
            "api": {"service": {"type": "LoadBalancer"}},
            "ingress": {"enabled": True},
            "gateway": {"enabled": True, "parentRefs": [{"name": "gw"}]},
            "metrics": {"service": {"annotations": {"prometheus.io/scrape": "true"}}},
        },
    )
    objects = render(values)
    service = named(objects, "Service", METRICS_SERVICE)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert {p["name"] for p in named(objects, "Service", API)["spec"]["ports"]} == {"http"}
    (ingress,) = by_kind(objects, "Ingress")
    backends = {p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    (route,) = by_kind(objects, "HTTPRoute")
    refs = {b["name"] for r in route["spec"]["rules"] for b in r.get("backendRefs") or []}
    assert METRICS_SERVICE not in backends | refs


# --- monitors: selectors, ports, labels, values ------------------------------------------------


def test_monitors_select_the_release_pods_by_their_named_metrics_port(render):
    objects = render(ALL_ON)
    pods = [p for p in pod_templates(objects) if p.long_running]
    services = by_kind(objects, "Service")

    def pods_with_port(selector: dict, port: str) -> set[str]:
        return {
            p.owner["metadata"]["name"]
            for p in pods
            if selector_matches(selector, p.labels)
            and any(cp.get("name") == port for c in p.spec["containers"] for cp in c.get("ports") or [])
        }

    scraped = {}
    for monitor in by_kind(objects, "ServiceMonitor"):
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        (endpoint,) = spec["endpoints"]
        matching = [
            s
            for s in services
            if selector_matches(spec["selector"], s["metadata"]["labels"])
            and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
        ]
        (service,) = matching  # exactly one Service offers the port: no target is scraped twice
        scraped[monitor["metadata"]["name"]] = pods_with_port({"matchLabels": service["spec"]["selector"]}, "metrics")
    for monitor in by_kind(objects, "PodMonitor"):
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        scraped[monitor["metadata"]["name"]] = pods_with_port(monitor["spec"]["selector"], endpoint["port"])
    assert scraped == {API: {API}, OPERATOR: {OPERATOR}, WORKER: {WORKER}}
    # The labels copied onto the series are on every scraped pod (the alerts select on them).
    for monitor in [*by_kind(objects, "ServiceMonitor"), *by_kind(objects, "PodMonitor")]:
        assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance", "app.kubernetes.io/component"]
    for pod in pods:
        if pod.owner["metadata"]["name"] in (API, WORKER, OPERATOR):
            assert {"app.kubernetes.io/instance", "app.kubernetes.io/component"} <= set(pod.labels)


def test_monitor_values_reach_every_endpoint_and_labels_every_object(render):
    relabel = [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]
    drop = [{"sourceLabels": ["__name__"], "regex": "imgproc_worker_queue_wait_seconds_created", "action": "drop"}]
    settings = {
        "enabled": True,
        "additionalLabels": {"release": "kube-prometheus-stack"},
        "interval": "15s",
        "scrapeTimeout": "5s",
        "relabelings": relabel,
        "metricRelabelings": drop,
    }
    values = deep_merge(
        ALL_ON,
        {
            "metrics": {
                "serviceMonitor": settings,
                "podMonitor": {**settings, "interval": "1m", "scrapeTimeout": ""},
                "prometheusRule": {"additionalLabels": {"role": "alert-rules"}},
                "dashboard": {"labels": {"grafana_dashboard": "yes"}, "annotations": {"grafana_folder": "imgproc"}},
            }
        },
    )
    objects = render(values)
    for monitor in by_kind(objects, "ServiceMonitor"):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["interval"] == "15s" and endpoint["scrapeTimeout"] == "5s"
        assert endpoint["relabelings"] == relabel and endpoint["metricRelabelings"] == drop
        assert endpoint["path"] == "/metrics"
    (pod_monitor,) = by_kind(objects, "PodMonitor")
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["interval"] == "1m" and "scrapeTimeout" not in endpoint  # empty: the Prometheus' own
    assert by_kind(objects, "PrometheusRule")[0]["metadata"]["labels"]["role"] == "alert-rules"
    dashboard = named(objects, "ConfigMap", f"{FULLNAME}-dashboard")["metadata"]
    assert dashboard["labels"]["grafana_dashboard"] == "yes"
    assert dashboard["annotations"] == {"grafana_folder": "imgproc"}
    # The autoscaler's own namespace/name labels are kept (not renamed exported_namespace).
    assert named(objects, "ServiceMonitor", OPERATOR)["spec"]["endpoints"][0]["honorLabels"] is True
    assert "honorLabels" not in named(objects, "ServiceMonitor", API)["spec"]["endpoints"][0]


def test_the_dashboard_is_the_sidecars_by_default(render):
    objects = render({"metrics": {"enabled": True, "dashboard": {"enabled": True}}})
    dashboard = named(objects, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["imgproc.json"]) == json.loads(DASHBOARD.read_text())


# --- schema -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metrics",
    [
        {"enable": True},
        {"port": "9102"},
        {"port": 8000},  # the API's own port
        {"port": 70000},
        {"service": {"type": "NodePort"}},
        {"serviceMonitor": {"labels": {"a": "b"}}},
        {"serviceMonitor": {"interval": "30 seconds"}},
        {"serviceMonitor": {"additionalLabels": {"a": 1}}},
        {"podMonitor": {"relabelings": {"action": "drop"}}},
        {"prometheusRule": {"alerts": {"apiErrorRatio": {"ratio": 5}}}},
        {"prometheusRule": {"alerts": {"apiErrorRatio": {"severity": "page"}}}},
        {"prometheusRule": {"alerts": {"uploadLatency": {"for": "10 minutes"}}}},
        {"prometheusRule": {"alerts": {"uploadLatency": {"window": "5m1h"}}}},  # Prometheus wants 1h5m
        {"prometheusRule": {"alerts": {"uploadLatency": {"window": ""}}}},
        {"prometheusRule": {"alerts": {"databaseReplicaLag": {"window": "5m"}}}},
        {"prometheusRule": {"alerts": {"diskFull": {"for": "5m"}}}},
        {"prometheusRule": {"runbookUrl": ""}},
        {"dashboard": {"json": "{}"}},
    ],
)
def test_the_schema_refuses_unknown_and_wrong_values(helm_fails, metrics):
    assert "values don't meet the specifications of the schema" in helm_fails({"metrics": metrics})


# --- NetworkPolicies ----------------------------------------------------------------------------


def test_the_configured_scraper_and_only_it_reaches_every_metrics_port(render):
    objects = render(ALL_ON)
    policies = by_kind(objects, "NetworkPolicy")
    pods = release_pods(objects)
    elsewhere = Endpoint.pod("prometheus", PROMETHEUS.labels, "other")
    targets = {"api": PORT, "worker": PORT, "operator": 9100}
    for name, port in targets.items():
        assert traffic_allowed(policies, PROMETHEUS, pods[name], port), name
        for other in (STRANGER, elsewhere, pods["flower"]):
            assert not traffic_allowed(policies, other, pods[name], port), (other.name, name)
    assert not traffic_allowed(policies, PROMETHEUS, pods["api"], 8000)  # the metrics port only
    # No scraper configured: the metrics ports are closed (the default).
    closed = render(deep_merge(ALL_ON, {"networkPolicy": {"metricsScrapers": []}}))
    closed_pods = release_pods(closed)
    for name, port in targets.items():
        assert not traffic_allowed(by_kind(closed, "NetworkPolicy"), PROMETHEUS, closed_pods[name], port), name


def test_the_scraper_peer_is_taken_as_given(render):
    objects = render(ALL_ON)
    for name in (API, WORKER, OPERATOR):
        ingress = named(objects, "NetworkPolicy", name)["spec"]["ingress"]
        assert [r["from"] for r in ingress if r["from"] == [PROMETHEUS_PEER]], name


# --- the dashboard ------------------------------------------------------------------------------


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
    queries += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return queries


def test_the_dashboard_is_valid_and_every_panel_has_a_query(render):
    board = json.loads(DASHBOARD.read_text())
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "release"}


def test_every_dashboard_query_uses_only_metrics_the_code_defines_and_shows_every_one():
    defined = defined_series()
    used = set()
    for query in dashboard_queries():
        names = used_series(query)
        assert names and names <= defined, (query, names - defined)
        if "imgproc_" in query and "label_values" not in query:  # panels select the release
            assert 'namespace="$namespace",app_kubernetes_io_instance="$release"' in query, query
        used |= names
    unshown = {family for family, samples in defined_families().items() if not set(samples) & used}
    assert not unshown, f"metrics on no panel: {unshown}"


# --- the alerts ---------------------------------------------------------------------------------


def runbook_sections() -> set[str]:
    return {m.lower() for m in re.findall(r"^## (\S+)$", RUNBOOK.read_text(), re.MULTILINE)}


def test_every_alert_has_a_summary_a_description_a_runbook_section_and_a_severity(render):
    alerts = rules(render(ALL_ON))
    assert set(alerts) == {
        "ImgprocBacklogStalled",
        "ImgprocWorkersAtMaxReplicas",
        "ImgprocTaskFailureRatioHigh",
        "ImgprocApiErrorRatioHigh",
        "ImgprocUploadLatencyHigh",
        "ImgprocReportsUndelivered",
        "ImgprocStorageErrorRatioHigh",
        "ImgprocDatabaseReplicaLagging",
        "ImgprocRedisMasterChanged",
    }
    assert runbook_sections() == {name.lower() for name in alerts}  # a section per alert, none left over
    for name, rule in alerts.items():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/runbook.md#{name.lower()}"
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        names = used_series(rule["expr"])
        assert names and names <= defined_series(), (name, names - defined_series())
        assert f'namespace="{NAMESPACE}",app_kubernetes_io_instance="rel"' in rule["expr"], name


def test_conditional_alerts_follow_what_is_deployed(render):
    base = {"metrics": {"enabled": True, "prometheusRule": {"enabled": True}}}
    always = {
        "ImgprocTaskFailureRatioHigh",
        "ImgprocApiErrorRatioHigh",
        "ImgprocUploadLatencyHigh",
        "ImgprocReportsUndelivered",
        "ImgprocStorageErrorRatioHigh",
    }
    operator = {"ImgprocBacklogStalled", "ImgprocWorkersAtMaxReplicas"}
    assert set(rules(render(base))) == always | operator
    assert set(rules(render(deep_merge(base, {"keda": {"enabled": True}})))) == always
    assert set(rules(render(deep_merge(base, {"autoscaler": {"enabled": False}})))) == always
    for case in ("postgresql-replicas", "external-replica-url"):
        assert "ImgprocDatabaseReplicaLagging" in rules(render(deep_merge(CASES[case].values, base))), case
    assert "ImgprocRedisMasterChanged" in rules(render(deep_merge(CASES["redis-sentinel"].values, base)))


def test_thresholds_durations_and_severities_come_from_the_values(render):
    alerts_values = {
        "backlogStalled": {"window": "20m", "for": "7m", "severity": "warning"},
        "taskFailureRatio": {"ratio": 0.3},
        "apiErrorRatio": {"ratio": 0.02, "window": "3m"},
        "uploadLatency": {"seconds": 12},
        "reportsUndelivered": {"retriesWaiting": 50},
        "storageErrorRatio": {"ratio": 0.2},
        "databaseReplicaLag": {"seconds": 90},
        "redisMasterChanged": {"window": "1h", "severity": "info"},
    }
    values = deep_merge(
        ALL_ON,
        {"autoscaler": {"maxReplicaCount": 25}, "metrics": {"prometheusRule": {"alerts": alerts_values}}},
    )
    alerts = rules(render(values))
    stalled = alerts["ImgprocBacklogStalled"]
    assert stalled["for"] == "7m" and stalled["labels"]["severity"] == "warning" and "[20m]" in stalled["expr"]
    assert ">= 25" in alerts["ImgprocWorkersAtMaxReplicas"]["expr"]  # autoscaler.maxReplicaCount, one fact
    assert alerts["ImgprocTaskFailureRatioHigh"]["expr"].endswith("> 0.3")
    errors = alerts["ImgprocApiErrorRatioHigh"]["expr"]
    assert errors.endswith("> 0.02") and "[3m]" in errors
    assert alerts["ImgprocUploadLatencyHigh"]["expr"].endswith("> 12")
    assert alerts["ImgprocReportsUndelivered"]["expr"].endswith("> 50")
    assert alerts["ImgprocStorageErrorRatioHigh"]["expr"].endswith("> 0.2")
    assert alerts["ImgprocDatabaseReplicaLagging"]["expr"].endswith("> 90")
    changed = alerts["ImgprocRedisMasterChanged"]
    assert "[1h]" in changed["expr"] and changed["labels"]["severity"] == "info"
    runbook = render(deep_merge(ALL_ON, {"metrics": {"prometheusRule": {"runbookUrl": "https://docs.example.com/rb"}}}))
    assert (
        rules(runbook)["ImgprocBacklogStalled"]["annotations"]["runbook_url"]
        == "https://docs.example.com/rb#imgprocbacklogstalled"
    )


def test_alerts_match_the_codes_route_and_failure_reasons(render):
    from worker.metrics import Failure

    alerts = rules(render(ALL_ON))
    assert f'route="{UPLOAD_ROUTE}",method="POST"' in alerts["ImgprocUploadLatencyHigh"]["expr"]
    # reason!~"image_.*" leaves out exactly the failures caused by the upload itself.
    assert 'reason!~"image_.*"' in alerts["ImgprocTaskFailureRatioHigh"]["expr"]
    caused_by_the_image = {f for f in Failure if f.name.startswith("IMAGE_")}
    assert {f for f in Failure if f.value.startswith("image_")} == caused_by_the_image
    # The autoscaler's series of this release's WorkerAutoscaler only.
    assert f'name="{WORKER}"' in alerts["ImgprocBacklogStalled"]["expr"]


# --- NOTES ----------------------------------------------------------------------------------------


def test_notes_show_how_to_reach_the_metrics_port(notes):
    text = notes(ON)
    assert f"kubectl -n {NAMESPACE} port-forward svc/{METRICS_SERVICE} {PORT}:{PORT} &" in text
    assert f"curl -fsS http://127.0.0.1:{PORT}/metrics | grep ^imgproc_" in text
    assert f"kubectl -n {NAMESPACE} port-forward deploy/{WORKER} {PORT + 1}:metrics &" in text
    assert "port-forward svc/" + METRICS_SERVICE not in notes({})


# --- the Prometheus Operator's CRDs, offline (on the test apiserver: tests/k8s/charts) ------------


def test_the_monitoring_objects_match_the_prometheus_operator_crd_schemas(render, k8s_tools_bin):
    import jsonschema

    from tests.support.charts.prometheus_operator import openapi_schema, prometheus_operator_crds

    crds = prometheus_operator_crds(k8s_tools_bin)
    objects = render(deep_merge(ALL_ON, {"metrics": {"podMonitor": {"interval": "", "scrapeTimeout": ""}}}))
    checked = set()
    for obj in objects:
        if obj["kind"] in crds:
            validator = jsonschema.Draft7Validator(openapi_schema(crds[obj["kind"]]))
            errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(obj)]
            assert not errors, (obj["kind"], obj["metadata"]["name"], errors)
            checked.add(obj["kind"])
    assert checked == set(crds)
