"""Offline checks of the local cluster's add-on manifests (k8s/cluster/, applied by
scripts/cluster): valid for the cluster's Kubernetes, metrics-server wired as the resource
metrics API, and Traefik's Gateway API side consistent with its entrypoints. The cluster tests
(tests/cluster/test_api_scaling.py) prove them on real pods."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ADDONS = ROOT / "k8s" / "cluster"


def script_value(name: str, script: str = "k8s-tools") -> str:
    """A NAME=value line of one of the scripts (a trailing comment left out)."""
    return re.search(rf"^{name}=(\S+)", (ROOT / "scripts" / script).read_text(), re.M).group(1)


# What scripts/cluster substitutes into the manifests, from where it takes it: the versions
# from scripts/k8s-tools, Traefik's Service address from scripts/cluster itself.
PLACEHOLDERS = {
    "TRAEFIK_VERSION": script_value("TRAEFIK_VERSION"),
    "INGRESS_IP": script_value("INGRESS_IP", "cluster"),
    "METRICS_SERVER_VERSION": script_value("METRICS_SERVER_VERSION"),
}


def documents(name: str) -> list[dict[str, Any]]:
    text = (ADDONS / name).read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


@pytest.mark.parametrize("name", ["metrics-server.yaml", "traefik.yaml"])
def test_addon_manifests_are_valid_for_kubernetes_1_35(name):
    for doc in documents(name):
        kubernetes_validate.validate(doc, "1.35", strict=True)


def test_metrics_server_serves_the_resource_metrics_api_from_the_kubelets_internal_address():
    docs = documents("metrics-server.yaml")
    service = one(docs, "APIService")
    assert service["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert service["spec"]["service"] == {"name": "metrics-server", "namespace": "kube-system"}
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{script_value('METRICS_SERVER_VERSION')}")
    args = set(container["args"])
    # The kubelet's serving certificate is self-signed, and the node name does not resolve.
    assert {"--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP"} <= args
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    assert security["capabilities"]["drop"] == ["ALL"] and not security["allowPrivilegeEscalation"]
    # It scrapes nodes/metrics (kubelet authorisation) and reads the apiserver's client CA.
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "system:metrics-server")
    assert {"resources": ["nodes/metrics"], "verbs": ["get"], "apiGroups": [""]} in role["rules"]
    assert one(docs, "RoleBinding")["roleRef"]["name"] == "extension-apiserver-authentication-reader"


def test_the_cluster_gateway_listens_on_traefiks_web_entrypoint():
    traefik = documents("traefik.yaml")
    (container,) = one(traefik, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--providers.kubernetesgateway=true" in container["args"]
    web = next(a for a in container["args"] if a.startswith("--entryPoints.web.address="))
    port = int(web.rsplit(":", 1)[1])
    gateway_docs = documents("gateway.yaml")
    gateway_class, gateway = one(gateway_docs, "GatewayClass"), one(gateway_docs, "Gateway")
    assert gateway_class["spec"]["controllerName"] == "traefik.io/gateway-controller"
    assert gateway["spec"]["gatewayClassName"] == gateway_class["metadata"]["name"]
    (listener,) = gateway["spec"]["listeners"]
    assert (listener["name"], listener["protocol"], listener["port"]) == ("web", "HTTP", port)
    assert listener["allowedRoutes"]["namespaces"]["from"] == "All"
    # Traefik's role covers every Gateway API resource its provider watches (standard channel).
    role = one(traefik, "ClusterRole")
    granted = {
        r
        for rule in role["rules"]
        if "gateway.networking.k8s.io" in rule["apiGroups"]
        for r in rule["resources"]
        if "watch" in rule["verbs"]
    }
    assert {
        "gatewayclasses",
        "gateways",
        "httproutes",
        "grpcroutes",
        "referencegrants",
        "backendtlspolicies",
    } <= granted


@functools.cache
def _gateway_crds() -> dict[str, dict[str, Any]]:
    from tests.fixtures.kube import locate_tools

    bin_dir = locate_tools()
    path = bin_dir / "gateway-api-standard-install.yaml" if bin_dir else None
    if path is None or not path.exists():
        pytest.skip("the Gateway API CRDs are missing: run scripts/k8s-tools")
    return {doc["spec"]["names"]["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def test_the_gateway_objects_match_the_pinned_gateway_api_crds():
    crds = _gateway_crds()
    for doc in documents("gateway.yaml"):
        crd = crds[doc["kind"]]
        assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == script_value(
            "GATEWAY_API_VERSION"
        )
        assert crd["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == doc["apiVersion"].split("/")[1]]
        errors = [
            f"{list(e.path)}: {e.message}"
            for e in jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"]).iter_errors(doc)
        ]
        assert not errors, errors
