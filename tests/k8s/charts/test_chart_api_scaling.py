"""The API's scaling and Gateway objects accepted by a real kube-apiserver (tests/fixtures/kube.py)."""

from __future__ import annotations

import time

import yaml

from tests.support.charts.crds import create_crds
from tests.support.charts.gateway import gateway_crds
from tests.support.charts.matrix import CASES
from tests.support.charts.rendering import CHART, RELEASE

FULLNAME = f"{RELEASE}-imgproc"
API = f"{FULLNAME}-api"


def test_a_real_api_server_accepts_the_hpa_and_the_httproute(kube, k8s_tools_bin, tmp_path):
    """helm install (no hooks: nothing runs here) with the HPA and the HTTPRoute into a
    kube-apiserver that has the Gateway API CRDs: strict field validation and the CRDs' CEL rules."""
    create_crds(kube, gateway_crds(k8s_tools_bin).values())
    namespace = kube.new_namespace("apiscale")
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({**CASES["api-autoscaling"].values, **CASES["gateway"].values}))
    for _ in range(30):  # new CRDs take a moment to be served
        result = kube.helm(
            "install", RELEASE, str(CHART), "--namespace", namespace, "--no-hooks", "--values", str(values), check=False
        )
        if result.returncode == 0 or "no matches for kind" not in result.stderr + result.stdout:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stderr, result.stderr
    dynamic = kube.dynamic_client()
    hpa = dynamic.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler").get(
        name=API, namespace=namespace
    )
    assert hpa.spec.scaleTargetRef.name == API and hpa.spec.maxReplicas == 6
    route = dynamic.resources.get(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute").get(
        name=FULLNAME, namespace=namespace
    )
    assert [ref.name for ref in route.spec.parentRefs] == ["public"]
    deployment = dynamic.resources.get(api_version="apps/v1", kind="Deployment").get(name=API, namespace=namespace)
    # No replicas in the manifest: the server defaults it to 1 until the HPA acts.
    assert deployment.spec.replicas == 1
    kube.helm("uninstall", RELEASE, "--namespace", namespace, "--no-hooks")  # the hooks need pods to run
