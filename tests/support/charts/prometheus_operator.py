"""The Prometheus Operator's CRDs that scripts/k8s-tools copies into its bin directory, by kind
(only those the chart renders objects of)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

PROMETHEUS_OPERATOR_CRDS = "prometheus-operator-crds.yaml"
CHART_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


@functools.cache
def prometheus_operator_crds(bin_dir: Path) -> dict[str, dict[str, Any]]:
    path = bin_dir / PROMETHEUS_OPERATOR_CRDS
    if not path.exists():
        pytest.skip(f"{path} is missing: run scripts/k8s-tools")
    crds = {doc["spec"]["names"]["kind"]: doc for doc in yaml.load_all(path.read_text(), Loader=_LOADER) if doc}
    return {kind: crds[kind] for kind in CHART_KINDS}


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # 4 MB of CRDs: libyaml
    """PyYAML resolves a bare ``=`` (a relabeling action in the CRDs' enums) to its YAML 1.1
    "value" tag, which it cannot construct: it is the string "="."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
_LOADER = _Loader


def openapi_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
    return version["schema"]["openAPIV3Schema"]


# --- what the Prometheus Operator makes of the chart's monitoring objects ---------------------
# A Prometheus without the operator (tests/fixtures/prometheus.py) is given the scrape jobs and the
# rule groups the operator would generate from them (its pkg/prometheus/promcfg.go, the subset the
# chart's objects use), so a cluster test checks the objects' selectors, port names and rules
# against real pods.

_RELABEL_KEYS = {"sourceLabels": "source_labels", "targetLabel": "target_label"}


def sanitize(label: str) -> str:
    """Prometheus' label name for a Kubernetes label (app.kubernetes.io/instance ->
    app_kubernetes_io_instance)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def _relabelings(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {_RELABEL_KEYS.get(key, key): value.lower() if key == "action" else value for key, value in rule.items()}
        for rule in rules
    ]


def scrape_configs(monitor: dict[str, Any], discovered: dict[str, str]) -> list[dict[str, Any]]:
    """The scrape jobs of one ServiceMonitor (role endpoints) or PodMonitor (role pod), their
    targets read from ``discovered[role]``: a file_sd file with the __meta_kubernetes_* labels
    that Kubernetes service discovery gives (Debian's Prometheus is built without it;
    tests/fixtures/prometheus.py writes the files from the cluster's objects)."""
    kind, meta, spec = monitor["kind"], monitor["metadata"], monitor["spec"]
    pod_monitor = kind == "PodMonitor"
    role, subject = ("pod", "pod") if pod_monitor else ("endpoints", "service")
    namespaces = spec.get("namespaceSelector", {}).get("matchNames") or [meta["namespace"]]
    in_namespaces = {"action": "keep", "source_labels": ["__meta_kubernetes_namespace"], "regex": "|".join(namespaces)}
    selector = [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_{subject}_label_{sanitize(key)}",
                f"__meta_kubernetes_{subject}_labelpresent_{sanitize(key)}",
            ],
            "regex": f"({value});true",
        }
        for key, value in spec["selector"].get("matchLabels", {}).items()
    ]
    jobs = []
    endpoints = spec["podMetricsEndpoints"] if pod_monitor else spec["endpoints"]
    for index, endpoint in enumerate(endpoints):
        port_label = (
            "__meta_kubernetes_pod_container_port_name" if pod_monitor else "__meta_kubernetes_endpoint_port_name"
        )
        relabel = [
            in_namespaces,
            *selector,
            {"action": "keep", "source_labels": [port_label], "regex": endpoint["port"]},
            *(
                [{"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}]
                if pod_monitor
                else []
            ),
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            *(
                []
                if pod_monitor
                else [{"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"}]
            ),
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            *(
                {"source_labels": [f"__meta_kubernetes_pod_label_{sanitize(label)}"], "target_label": sanitize(label)}
                for label in spec.get("podTargetLabels", [])
            ),
            (
                {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"}
                if pod_monitor
                else {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"}
            ),
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            *_relabelings(endpoint.get("relabelings", [])),
        ]
        jobs.append(
            {
                "job_name": f"{kind[0].lower()}{kind[1:]}/{meta['namespace']}/{meta['name']}/{index}",
                "honor_labels": endpoint.get("honorLabels", False),
                "metrics_path": endpoint.get("path", "/metrics"),
                **({"scrape_interval": endpoint["interval"]} if "interval" in endpoint else {}),
                **({"scrape_timeout": endpoint["scrapeTimeout"]} if "scrapeTimeout" in endpoint else {}),
                "file_sd_configs": [{"files": [discovered[role]]}],
                "relabel_configs": relabel,
                "metric_relabel_configs": _relabelings(endpoint.get("metricRelabelings", [])),
            }
        )
    return jobs
