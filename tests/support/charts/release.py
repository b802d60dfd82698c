"""Who is who in a release the chart tests render: object names, the pods as NetworkPolicy
endpoints, the API's paths. Shared by the chart tests of every tier."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest

from tests.support.charts.manifests import (
    Endpoint,
    pod_templates,
)
from tests.support.charts.rendering import NAMESPACE, RELEASE

FULLNAME = f"{RELEASE}-imgproc"
API, WORKER, FLOWER, OPERATOR = (f"{FULLNAME}-{c}" for c in ("api", "worker", "flower", "operator"))


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container.get("env") or []}


@functools.cache
def openapi_paths() -> tuple[str, ...] | str:
    try:
        from app.main import create_app

        return tuple(create_app().openapi()["paths"])
    except Exception as error:  # noqa: BLE001 - the app is tested elsewhere; report, don't fail here
        return f"app.main.create_app() failed: {error!r}"


def app_paths() -> list[str]:
    """Concrete paths of every route the API serves (from its OpenAPI document)."""
    paths = openapi_paths()
    if isinstance(paths, str):
        pytest.skip(paths)
    return [re.sub(r"\{[^}]+\}", "1", path) for path in paths]


INTERNAL_PATHS = ("/livez", "/readyz")


WEBHOOK_PROBES = [
    "/api/webhook",
    "/api/webhook/",
    "/api/webhook/task-complete",
    "/api/webhook/task-complete/",
    "/api/webhook/anything/else",
]


DNS = Endpoint.pod("coredns", {"k8s-app": "kube-dns"}, "kube-system")


STRANGER = Endpoint.pod("stranger", {"app": "other"}, NAMESPACE)


def release_pods(objects) -> dict[str, Endpoint]:
    pods = {}
    for pod in pod_templates(objects):
        name, component = pod.labels["app.kubernetes.io/name"], pod.labels["app.kubernetes.io/component"]
        key = component if name == "imgproc" else f"{name}-{component}"
        pods[key] = Endpoint.pod(key, pod.labels, NAMESPACE)
    return pods


KEDA_OPERATOR = Endpoint.pod("keda-operator", {"app": "keda-operator"}, "keda")
