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
