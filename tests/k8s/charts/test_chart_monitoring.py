"""The chart's ServiceMonitors, PodMonitor and PrometheusRule accepted by a real kube-apiserver
(tests/fixtures/kube.py) that has the Prometheus Operator's CRDs (scripts/k8s-tools): strict field
validation against the CRDs' schemas, server-side dry run first, then stored and read back."""

from __future__ import annotations

import time

import pytest

from tests.support.charts.crds import create_crds
from tests.support.charts.matrix import deep_merge
from tests.support.charts.monitoring import ALL_ON
from tests.support.charts.prometheus_operator import CHART_KINDS, prometheus_operator_crds

# Every optional field of the monitors set, so that each is checked against the CRD too.
VALUES = deep_merge(
    ALL_ON,
    {
        "metrics": {
            "serviceMonitor": {
                "additionalLabels": {"release": "kube-prometheus-stack"},
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
                "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
            },
            "podMonitor": {"interval": "1m", "scrapeTimeout": ""},
            "prometheusRule": {"additionalLabels": {"role": "alert-rules"}},
        }
    },
)


def missing(rendered, stored, path: str = "spec") -> list[str]:
    """The paths of rendered fields that the stored object lacks or holds otherwise."""
    if isinstance(rendered, dict) and isinstance(stored, dict):
        return [p for key, value in rendered.items() for p in missing(value, stored.get(key), f"{path}.{key}")]
    if isinstance(rendered, list) and isinstance(stored, list) and len(rendered) == len(stored):
        return [p for i, (r, s) in enumerate(zip(rendered, stored, strict=True)) for p in missing(r, s, f"{path}[{i}]")]
    return [] if rendered == stored else [path]


def install_crds(kube, k8s_tools_bin) -> None:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    create_crds(kube, prometheus_operator_crds(k8s_tools_bin).values())
    for _ in range(30):  # new CRDs take a moment to be served
        try:
            for kind in CHART_KINDS:
                kube.dynamic_client().resources.get(api_version="monitoring.coreos.com/v1", kind=kind)
            return
        except ResourceNotFoundError:
            time.sleep(1)
    pytest.fail("the Prometheus Operator's CRDs were not served within 30 s")


def test_a_real_api_server_accepts_the_monitoring_objects(kube, k8s_tools_bin, render):
    install_crds(kube, k8s_tools_bin)
    namespace = kube.new_namespace("monitoring")
    objects = [o for o in render(VALUES) if o["kind"] in CHART_KINDS]
    assert sorted(o["kind"] for o in objects) == ["PodMonitor", "PrometheusRule", "ServiceMonitor", "ServiceMonitor"]
    for obj in objects:
        kube.create(obj, namespace, dry_run=True)
    for obj in objects:
        kube.create(obj, namespace)
    dynamic = kube.dynamic_client()
    for obj in objects:
        stored = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).get(
            name=obj["metadata"]["name"], namespace=namespace
        )
        # Nothing pruned: every rendered field is stored as rendered (the CRDs add defaults).
        assert not missing(obj["spec"], stored.to_dict()["spec"]), (
            obj["metadata"]["name"],
            missing(obj["spec"], stored.to_dict()["spec"]),
        )


def test_the_crds_really_check_the_objects(kube, k8s_tools_bin, render):
    """A wrong interval and an unknown field are refused: the schemas above are live."""
    from kubernetes.client.exceptions import ApiException

    install_crds(kube, k8s_tools_bin)
    namespace = kube.new_namespace("monitoring")
    (monitor,) = [o for o in render(VALUES) if o["kind"] == "PodMonitor"]
    wrong_interval = deep_merge(monitor, {})
    wrong_interval["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    unknown_field = deep_merge(monitor, {"spec": {"scrapeEverything": True}})
    for obj in (wrong_interval, unknown_field):
        with pytest.raises(ApiException) as refused:
            kube.create(obj, namespace, dry_run=True)
        assert refused.value.status in (400, 422), refused.value.body
