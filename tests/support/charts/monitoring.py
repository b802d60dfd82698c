"""The chart's monitoring objects in tests: the values that turn all of them on, the metric
names the code defines (read from the registries of app/core/metrics.py, worker/metrics.py and
operator/autoscaler/metrics.py, never a list kept here) and the names a PromQL expression uses."""

from __future__ import annotations

import functools
import re
from typing import Any

from tests.support.charts.manifests import Endpoint

# A Prometheus in its own namespace, as networkPolicy.metricsScrapers names it.
PROMETHEUS = Endpoint.pod("prometheus", {"app.kubernetes.io/name": "prometheus"}, "monitoring")
PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}
SWITCHES = ("serviceMonitor", "podMonitor", "prometheusRule", "dashboard")
# Every monitoring object, and every conditional alert (a read replica, Sentinel).
ALL_ON: dict[str, Any] = {
    "metrics": {"enabled": True, **{switch: {"enabled": True} for switch in SWITCHES}},
    "networkPolicy": {"metricsScrapers": [PROMETHEUS_PEER]},
    "postgresql": {"readReplicas": {"replicaCount": 1}},
    "redis": {"replica": {"replicaCount": 2}, "sentinel": {"enabled": True}},
}

# The samples a family of each type exposes (prometheus_client's exposition).
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


@functools.cache
def defined_families() -> dict[str, tuple[str, ...]]:
    """{family name: its sample names} of every metric the API, the worker and the autoscaler
    define: the collectors of their metrics modules, custom collectors included."""
    import importlib

    from prometheus_client.metrics import MetricWrapperBase

    families: dict[str, tuple[str, ...]] = {}
    for name in ("app.core.metrics", "worker.metrics", "autoscaler.metrics"):
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if isinstance(obj, MetricWrapperBase):
                described = obj.describe()
            elif isinstance(obj, type) and obj.__module__ == name and callable(getattr(obj, "collect", None)):
                described = list(obj().collect())
            else:
                continue
            for family in described:
                families[family.name] = tuple(family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type])
    return families


def defined_series() -> set[str]:
    return {sample for samples in defined_families().values() for sample in samples}


_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_OURS = re.compile(r"\bimgproc_[a-zA-Z0-9_:]*")


def used_series(expr: str) -> set[str]:
    """The metric names in a PromQL expression: every name before a label matcher, and every
    imgproc_ name anywhere (label_values(imgproc_x, label))."""
    return set(_SELECTOR.findall(expr)) | set(_OURS.findall(expr))
