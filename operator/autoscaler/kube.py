"""Kubernetes I/O for the autoscaler: the scale subresource, the status subresource, one Secret.

Blocking calls (the official client); the reconciler runs them in a thread. Every call the
operator makes besides kopf's own watch/patch/event traffic is here, which is what the
chart's Role has to allow:

* ``get``/``patch`` ``deployments/scale`` (never the Deployment itself),
* ``patch`` ``workerautoscalers/status``,
* ``get`` on the one Secret named in ``spec.redis.secretRef`` (resourceNames in the Role),
* ``get``/``patch`` ``workerautoscalers`` to take kopf's finalizer off at shutdown,
* ``list``/``delete`` ``workerautoscalers`` for the chart's pre-delete hook (``imgproc operator
  --uninstall``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client import ApiException
from urllib3.exceptions import HTTPError

from autoscaler import GROUP, PLURAL, VERSION
from autoscaler.queue_reader import SecretRef

FIELD_MANAGER = "imgproc-autoscaler"
REQUEST_TIMEOUT = 10  # seconds per API call


class KubeError(Exception):
    """An API call failed; ``reason`` is a CamelCase word for conditions and events."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Scale:
    replicas: int  # spec.replicas: what the Deployment is asked to run


@dataclass
class Kube:
    api: client.ApiClient

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster service account, else $KUBECONFIG / ~/.kube/config."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration, persist_config=False)
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self.api.close()

    def read_scale(self, namespace: str, name: str) -> Scale:
        with _errors(f"deployment {namespace}/{name}", not_found="ScaleTargetNotFound"):
            scale = client.AppsV1Api(self.api).read_namespaced_deployment_scale(
                name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        spec_replicas = scale.spec.replicas if scale.spec and scale.spec.replicas is not None else 0
        return Scale(int(spec_replicas))

    def patch_scale(self, namespace: str, name: str, replicas: int) -> None:
        with _errors(f"deployment {namespace}/{name}", not_found="ScaleTargetNotFound", other="ScaleFailed"):
            client.AppsV1Api(self.api).patch_namespaced_deployment_scale(
                name,
                namespace,
                {"spec": {"replicas": int(replicas)}},
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )

    def read_secret(self, namespace: str, ref: SecretRef) -> str:
        with _errors(f"secret {namespace}/{ref.name}", not_found="SecretNotFound"):
            secret = client.CoreV1Api(self.api).read_namespaced_secret(
                ref.name, namespace, _request_timeout=REQUEST_TIMEOUT
            )
        data = (secret.data or {}).get(ref.key)
        if data is None:
            raise KubeError("SecretKeyNotFound", f"secret {namespace}/{ref.name} has no key {ref.key!r}")
        return base64.b64decode(data).decode()

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        with _errors(f"{PLURAL} {namespace}/{name}", not_found="Gone"):
            client.CustomObjectsApi(self.api).patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        """Drop one finalizer, guarded by resourceVersion (a concurrent change fails, not clobbers)."""
        api = client.CustomObjectsApi(self.api)
        with _errors(f"{PLURAL} {namespace}/{name}", not_found="Gone"):
            obj = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
            meta = obj.get("metadata", {})
            finalizers = meta.get("finalizers") or []
            if finalizer not in finalizers:
                return
            patch = {
                "metadata": {
                    "finalizers": [f for f in finalizers if f != finalizer],
                    "resourceVersion": meta.get("resourceVersion"),
                }
            }
            api.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _request_timeout=REQUEST_TIMEOUT,
            )

    def autoscaler_names(self, namespace: str, selector: str) -> list[str]:
        api = client.CustomObjectsApi(self.api)
        with _errors(f"{PLURAL} in {namespace}", not_found="Gone"):
            listed = api.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, label_selector=selector, _request_timeout=REQUEST_TIMEOUT
            )
        return sorted(item["metadata"]["name"] for item in listed.get("items", []))

    def delete_autoscaler(self, namespace: str, name: str) -> None:
        api = client.CustomObjectsApi(self.api)
        try:
            with _errors(f"{PLURAL} {namespace}/{name}", not_found="Gone"):
                api.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
                )
        except KubeError as exc:
            if exc.reason != "Gone":
                raise


class _errors:
    def __init__(self, what: str, *, not_found: str, other: str = "ApiError") -> None:
        self.what, self.not_found, self.other = what, not_found, other

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, ApiException):
            if exc.status == 404:
                raise KubeError(self.not_found, f"{self.what} not found") from exc
            if exc.status == 403:
                raise KubeError("Forbidden", f"{self.what}: forbidden ({_message(exc)})") from exc
            raise KubeError(self.other, f"{self.what}: HTTP {exc.status} {_message(exc)}") from exc
        if isinstance(exc, OSError | HTTPError):  # connection refused, timeouts
            raise KubeError(self.other, f"{self.what}: {type(exc).__name__}: {exc}") from exc
        return False


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
