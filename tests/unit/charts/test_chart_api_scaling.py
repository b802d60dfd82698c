"""API replicas and the load balancer in charts/imgproc: the CPU HorizontalPodAutoscaler
(api.autoscaling), the Gateway API HTTPRoute (gateway.*) with the Ingress's routing, and how both
fit the PodDisruptionBudget, the spread constraints, the schema and NOTES. The HTTPRoute is
checked against the Gateway API's own CRD (the standard-channel file scripts/k8s-tools fetches)
offline, and by a real kube-apiserver with those CRDs installed (their CEL rules included)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.charts.gateway import gateway_crds
from tests.support.charts.manifests import by_kind, ingress_backend, named, pod_templates, selector_matches
from tests.support.charts.matrix import CASES
from tests.support.charts.release import INTERNAL_PATHS, WEBHOOK_PROBES, app_paths
from tests.support.charts.rendering import CHART, RELEASE

FULLNAME = f"{RELEASE}-imgproc"
API, FLOWER = f"{FULLNAME}-api", f"{FULLNAME}-flower"
NO_BACKEND = "<no backend>"


def hpa_values(**overrides: Any) -> dict[str, Any]:
    return {"api": {"autoscaling": {"enabled": True, **overrides}}}


# --- HorizontalPodAutoscaler -------------------------------------------------------------------


def test_without_autoscaling_the_deployment_keeps_its_replica_count_and_no_hpa_exists(render):
    objects = render({"api": {"replicaCount": 3}})
    assert named(objects, "Deployment", API)["spec"]["replicas"] == 3
    assert not by_kind(objects, "HorizontalPodAutoscaler")


def test_with_autoscaling_the_hpa_owns_the_api_replica_count(render):
    objects = render(CASES["api-autoscaling"].values)
    deployment = named(objects, "Deployment", API)
    # No replicas field: `helm upgrade` must not reset what the HPA chose.
    assert "replicas" not in deployment["spec"]
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["metadata"]["name"] == API
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": API}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    assert hpa["spec"]["behavior"] == {
        "scaleDown": {
            "stabilizationWindowSeconds": 120,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    # Utilisation is use / request: every API container the HPA averages over requests CPU.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"]
    # Only the worker's owner (operator) and this HPA scale anything.
    assert [o["kind"] for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")] == [
        "HorizontalPodAutoscaler"
    ]


def test_the_default_hpa_keeps_kubernetes_behaviour_and_matches_the_fixed_count(render):
    values = yaml.safe_load((CHART / "values.yaml").read_text())["api"]
    assert values["autoscaling"]["minReplicas"] == values["replicaCount"] == 2
    (hpa,) = by_kind(render(hpa_values()), "HorizontalPodAutoscaler")
    assert "behavior" not in hpa["spec"]  # {}: Kubernetes' defaults
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_the_disruption_budget_and_spread_constraints_fit_every_replica_count_the_hpa_picks(render):
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "imgproc", "app.kubernetes.io/component": "api"}},
    }
    objects = render(
        {
            "api": {
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8},
                "topologySpreadConstraints": [spread],
            }
        }
    )
    (hpa,) = by_kind(objects, "HorizontalPodAutoscaler")
    pdb = named(objects, "PodDisruptionBudget", API)
    (api_pod,) = [p for p in pod_templates(objects) if p.owner["metadata"]["name"] == API]
    assert selector_matches(pdb["spec"]["selector"], api_pod.labels)
    # A drain leaves at least one pod even at the HPA's minimum; the budget is a count, not a
    # percentage, so it means the same at any size.
    assert isinstance(pdb["spec"]["maxUnavailable"], int)
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    (constraint,) = api_pod.spec["topologySpreadConstraints"]
    assert selector_matches(constraint["labelSelector"], api_pod.labels)
    # ScheduleAnyway: a scale-up beyond the number of nodes still places its pods.
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"


def test_notes_warn_when_the_hpa_minimum_leaves_a_drain_nothing(notes):
    warning = "a node drain may evict the only API pod"
    assert warning in notes(hpa_values(minReplicas=1, maxReplicas=3))
    assert warning not in notes(hpa_values(minReplicas=2))
    assert warning not in notes(
        {"api": {"autoscaling": {"enabled": True, "minReplicas": 1}, "pdb": {"enabled": False}}}
    )
    text = notes(hpa_values(minReplicas=2, maxReplicas=5, targetCPUUtilizationPercentage=50))
    assert f"kubectl -n imgproc-test get hpa {API} -w" in text
    assert "2-5 pods, target 50 %" in text
    # The shared ReadWriteOnce claim is counted with the HPA's maximum, not replicaCount.
    assert "up to 5 API" in text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            hpa_values(minReplicas=4, maxReplicas=3),
            "api.autoscaling.minReplicas must not exceed api.autoscaling.maxReplicas",
        ),
        (
            {"api": {"autoscaling": {"enabled": True}, "resources": {"requests": {"cpu": None}}}},
            "api.autoscaling.enabled needs api.resources.requests.cpu",
        ),
    ],
)
def test_inconsistent_autoscaling_values_fail_at_render_time(helm_fails, values, message):
    assert message in helm_fails(values)


def test_api_pods_may_drop_the_cpu_request_without_an_hpa(render):
    objects = render({"api": {"resources": {"requests": {"cpu": None}}}})
    (container,) = named(objects, "Deployment", API)["spec"]["template"]["spec"]["containers"]
    assert "cpu" not in container["resources"]["requests"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (hpa_values(minReplicas=0), "at '/api/autoscaling/minReplicas': minimum: got 0, want 1"),
        (hpa_values(targetCPUUtilizationPercentage=0), "at '/api/autoscaling/targetCPUUtilizationPercentage'"),
        (hpa_values(targetCPU=50), "at '/api/autoscaling': additional properties 'targetCPU' not allowed"),
        (
            hpa_values(behavior={"scaleUp": {"selectPolicy": "Sometimes"}}),
            "at '/api/autoscaling/behavior/scaleUp/selectPolicy'",
        ),
        (
            hpa_values(behavior={"scaleDown": {"policies": [{"type": "Pods", "value": 1}]}}),
            "at '/api/autoscaling/behavior/scaleDown/policies/0': missing property 'periodSeconds'",
        ),
        (
            hpa_values(behavior={"scaleDown": {"stabilizationWindowSeconds": 4000}}),
            "at '/api/autoscaling/behavior/scaleDown/stabilizationWindowSeconds'",
        ),
        (
            hpa_values(behavior={"sideways": {}}),
            "at '/api/autoscaling/behavior': additional properties 'sideways' not allowed",
        ),
        ({"api": {"service": {"type": "ExternalName"}}}, "at '/api/service/type'"),
        ({"api": {"service": {"externalTrafficPolicy": "Nearest"}}}, "at '/api/service/externalTrafficPolicy'"),
        (
            {"api": {"service": {"loadBalancerSourceRanges": ["everyone"]}}},
            "at '/api/service/loadBalancerSourceRanges/0'",
        ),
    ],
)
def test_schema_rejects_wrong_autoscaling_values(helm_fails, values, message):
    error = helm_fails(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


def test_a_load_balancer_service_publishes_the_api_port(render):
    objects = render(
        {
            "api": {
                "service": {
                    "type": "LoadBalancer",
                    "annotations": {"lb.example/scheme": "internal"},
                    "externalTrafficPolicy": "Local",
                    "loadBalancerSourceRanges": ["203.0.113.0/24"],
                }
            }
        }
    )
    service = named(objects, "Service", API)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"] == {"lb.example/scheme": "internal"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8000, "http")]
    # Local: the clients' own addresses reach the app (the per-address new-user limit).
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_load_balancer_settings_stay_off_a_cluster_ip_service(render):
    objects = render(
        {"api": {"service": {"externalTrafficPolicy": "Local", "loadBalancerSourceRanges": ["203.0.113.0/24"]}}}
    )
    spec = named(objects, "Service", API)["spec"]
    assert spec["type"] == "ClusterIP"
    assert "externalTrafficPolicy" not in spec and "loadBalancerSourceRanges" not in spec
    node_port = named(
        render({"api": {"service": {"type": "NodePort", "externalTrafficPolicy": "Local"}}}), "Service", API
    )["spec"]
    assert node_port["externalTrafficPolicy"] == "Local" and "loadBalancerSourceRanges" not in node_port


# --- HTTPRoute ---------------------------------------------------------------------------------


def _path_matches(kind: str, value: str, path: str) -> bool:
    if kind == "Exact":
        return value == path
    assert kind == "PathPrefix", kind
    prefix = [part for part in value.split("/") if part]  # element-wise, as in the Gateway API
    return [part for part in path.split("/") if part][: len(prefix)] == prefix


def httproute_backend(route: dict[str, Any], host: str, path: str) -> str | None:
    """The Service an HTTPRoute sends (host, path) to under the Gateway API's precedence (Exact
    before any prefix, then the longest prefix); NO_BACKEND for a matching rule without
    backends (the gateway answers itself), None when nothing matches."""
    hostnames = route["spec"].get("hostnames")
    if hostnames and host not in hostnames:
        return None
    best: tuple[int, int, str] | None = None
    for rule in route["spec"]["rules"]:
        refs = rule.get("backendRefs") or []
        target = refs[0]["name"] if refs else NO_BACKEND
        for match in rule["matches"]:
            kind, value = match["path"]["type"], match["path"]["value"]
            if _path_matches(kind, value, path):
                rank = (kind == "Exact", len(value), target)
                best = max(best, rank) if best else rank
    return best[2] if best else None


def test_the_httproute_attaches_to_the_given_gateway_and_hosts(render):
    objects = render(CASES["gateway"].values)
    (route,) = by_kind(objects, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["metadata"]["name"] == FULLNAME
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "public",
            "namespace": "gateways",
            "sectionName": "http",
        }
    ]
    assert route["spec"]["hostnames"] == ["imgproc.example.com"]
    assert not by_kind(objects, "Ingress")
    # Defaults: the release's namespace and every listener.
    (route,) = by_kind(render({"gateway": {"enabled": True, "parentRefs": [{"name": "gw"}]}}), "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]
    assert "hostnames" not in route["spec"]


def test_the_httproute_routes_exactly_what_the_ingress_routes(render):
    values = {
        "ingress": {"enabled": True, "host": "imgproc.example.com"},
        "gateway": {"enabled": True, "hostnames": ["imgproc.example.com"], "parentRefs": [{"name": "gw"}]},
    }
    objects = render(values)
    (ingress,), (route,) = by_kind(objects, "Ingress"), by_kind(objects, "HTTPRoute")
    host = "imgproc.example.com"
    paths = [
        *app_paths(),
        *WEBHOOK_PROBES,
        "/",
        "/docs",
        "/openapi.json",
        "/frontend",
        "/frontend/app.js",
        "/flower/",
        "/flower/api/workers",
        "/elsewhere",
        "/apix",
    ]
    for path in paths:
        via_ingress = ingress_backend(ingress, host, path)
        via_route = httproute_backend(route, host, path)
        if via_ingress == f"{FULLNAME}-blocked":  # the Ingress's sink; the route has a rule without backends
            assert via_route == NO_BACKEND, path
        else:
            assert via_route == via_ingress, (path, via_ingress, via_route)
    for path in WEBHOOK_PROBES:
        assert httproute_backend(route, host, path) == NO_BACKEND, path
    for path in INTERNAL_PATHS:
        assert httproute_backend(route, host, path) is None, f"{path} is internal"
    assert httproute_backend(route, "other.example", "/api/tasks") is None
    # Backends resolve to the Services' ports.
    for rule in route["spec"]["rules"]:
        for ref in rule.get("backendRefs") or []:
            service = named(objects, "Service", ref["name"])
            assert ref["port"] in {p["port"] for p in service["spec"]["ports"]}, ref


def test_without_flower_the_httproute_has_no_flower_rule(render):
    (route,) = by_kind(render({**CASES["gateway"].values, "flower": {"enabled": False}}), "HTTPRoute")
    assert httproute_backend(route, "imgproc.example.com", "/flower/") is None
    assert httproute_backend(route, "imgproc.example.com", "/api/tasks") == API


def test_notes_point_at_the_gateway_host(notes):
    assert "export IMGPROC_URL=http://imgproc.example.com" in notes(CASES["gateway"].values)


def test_gateway_without_parent_refs_fails_at_render_time(helm_fails):
    assert "gateway.enabled needs gateway.parentRefs" in helm_fails({"gateway": {"enabled": True}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gateway": {"parentRefs": [{"namespace": "x"}]}}, "at '/gateway/parentRefs/0': missing property 'name'"),
        (
            {"gateway": {"parentRefs": [{"name": "gw", "port": 80}]}},
            "at '/gateway/parentRefs/0': additional properties 'port' not allowed",
        ),
        ({"gateway": {"hostnames": ["Not_A_Host"]}}, "at '/gateway/hostnames/0'"),
        ({"gateway": {"host": "a.example"}}, "at '/gateway': additional properties 'host' not allowed"),
    ],
)
def test_schema_rejects_wrong_gateway_values(helm_fails, values, message):
    error = helm_fails(values)
    assert "values don't meet the specifications of the schema" in error
    assert message in error, error


@pytest.mark.parametrize("case", ["gateway", "api-autoscaling"])
def test_the_httproute_matches_the_gateway_api_crd_schema(render, k8s_tools_bin, case):
    crd = gateway_crds(k8s_tools_bin)["HTTPRoute"]
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    validator = jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])
    values = (
        CASES[case].values
        if case == "gateway"
        else {**CASES[case].values, "gateway": {"enabled": True, "parentRefs": [{"name": "gw"}]}}
    )
    for route in by_kind(render(values), "HTTPRoute"):
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(route)]
        assert not errors, errors
        # maxItems of the CRD, which jsonschema checks above too: 16 rules, 64 matches per rule.
        assert len(route["spec"]["rules"]) <= 16
