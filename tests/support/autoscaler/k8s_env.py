"""One autoscaled namespace on the test bed (shared by the k8s tests, the loop test and the bench).

``deploy()`` creates a namespace with the chart's objects rendered by ``helm template`` (the
operator's ServiceAccount, Role and RoleBinding, the worker Deployment and the default
WorkerAutoscaler, all with test values), a Secret holding the Redis password, and starts the
operator as a process authenticated as that ServiceAccount (a TokenRequest token: exactly what
the Role grants, nothing else). ``undeploy()`` stops it, checks it never hit a 403, strips the
finalizer and deletes the WorkerAutoscaler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml
from kubernetes import client
from kubernetes.client import ApiException

from autoscaler import GROUP, PLURAL, VERSION
from tests.fixtures.kube import KubeTestBed
from tests.fixtures.ports import free_port
from tests.fixtures.redis import RedisServer
from tests.support.autoscaler.harness import OperatorProcess

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "imgproc"
CRD = CHART / "crds" / "workerautoscalers.yaml"
RELEASE = "t"
WORKER = f"{RELEASE}-imgproc-worker"
OPERATOR_SA = f"{RELEASE}-imgproc-operator"
SECRET, SECRET_KEY, PASSWORD = "redis-auth", "password", "op-test-pw"
POLL = 1  # default pollingInterval of the test objects, seconds

VALUES = {  # short names -> chart values
    "poll": "autoscaler.pollingInterval",
    "min": "autoscaler.minReplicaCount",
    "max": "autoscaler.maxReplicaCount",
    "tasks_per_replica": "autoscaler.tasksPerReplica",
    "up_step": "autoscaler.scaleUp.maxStep",
    "down_window": "autoscaler.scaleDown.stabilizationWindowSeconds",
    "down_step": "autoscaler.scaleDown.maxStep",
    "cooldown": "autoscaler.cooldownPeriod",
    "failure_threshold": "autoscaler.fallback.failureThreshold",
    "fallback": "autoscaler.fallback.replicas",
}


def require_password(server: RedisServer) -> None:
    """CONFIG SET requirepass (lost on restart: call again after server.start())."""
    connection = redis.Redis(port=server.port)
    connection.config_set("requirepass", PASSWORD)
    connection.close()


def broker_url(server: RedisServer) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


def install_crd(kube: KubeTestBed) -> dict:
    """The chart's CRD, created with strict field validation, once, and waited for."""
    manifest = yaml.safe_load(CRD.read_text())
    try:
        kube.create(manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
    api = client.ApiextensionsV1Api(kube.api_client)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conditions = api.read_custom_resource_definition(manifest["metadata"]["name"]).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            kube._dynamic_client = None  # a new resource type: rebuild the cached discovery
            return manifest
        time.sleep(0.2)
    raise TimeoutError("CRD not Established")


@dataclass
class Autoscaled:
    """A namespace with the chart's objects and a running operator."""

    kube: KubeTestBed
    namespace: str
    operator: OperatorProcess
    redis: RedisServer
    token: str

    @property
    def broker(self) -> str:
        return broker_url(self.redis)

    def replicas(self) -> int:
        apps = client.AppsV1Api(self.kube.api_client)
        scale = apps.read_namespaced_deployment_scale(WORKER, self.namespace)
        return scale.spec.replicas or 0  # the API omits replicas: 0

    def obj(self) -> dict[str, Any]:
        return client.CustomObjectsApi(self.kube.api_client).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, WORKER
        )

    def status(self) -> dict[str, Any]:
        return self.obj().get("status") or {}

    def condition(self, kind: str) -> str | None:
        return next((c["status"] for c in self.status().get("conditions", []) if c["type"] == kind), None)

    def annotate(self, annotations: dict[str, str | None]) -> None:
        client.CustomObjectsApi(self.kube.api_client).patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, WORKER, {"metadata": {"annotations": annotations}}
        )

    def events(self) -> list[tuple[str, str, str]]:
        selector = f"involvedObject.name={WORKER},involvedObject.kind=WorkerAutoscaler"
        items = (
            client.CoreV1Api(self.kube.api_client).list_namespaced_event(self.namespace, field_selector=selector).items
        )
        return [(e.type, e.reason, e.message) for e in items]

    def eventually(self, check: Callable[[], Any], timeout: float, what: str) -> float:
        """Polls check() until truthy; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(
            f"not within {timeout}s: {what}; replicas={self.replicas()} "
            f"status={json.dumps(self.status())}\n--- operator log (tail)\n"
            f"{self.operator.output()[-4000:]}"
        )

    def holds(self, check: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert check(), f"{what}: replicas={self.replicas()} status={json.dumps(self.status())}"
            time.sleep(0.2)


def render(kube: KubeTestBed, namespace: str, redis_port: int, values: dict[str, Any]) -> list[dict]:
    sets = {
        "redis.enabled": "false",
        "postgresql.enabled": "false",
        "externalDatabase.host": "db.invalid",
        "externalRedis.host": "127.0.0.1",
        "externalRedis.port": redis_port,
        "externalRedis.existingSecret": SECRET,
        "externalRedis.existingSecretPasswordKey": SECRET_KEY,
        "autoscaler.pollingInterval": POLL,
    } | {VALUES[key]: value for key, value in values.items()}
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    for template in ("serviceaccount", "role", "workerautoscaler"):
        args += ["--show-only", f"templates/operator/{template}.yaml"]
    args += ["--show-only", "templates/worker/deployment.yaml"]
    return [doc for doc in yaml.safe_load_all(kube.helm(*args).stdout) if doc]


def deploy(kube: KubeTestBed, server: RedisServer, log_dir: Path, **values: Any) -> Autoscaled:
    """Namespace + chart objects + operator (started, healthy). ``values`` use ``VALUES``' names."""
    redis.Redis.from_url(broker_url(server)).flushdb()
    namespace = kube.new_namespace("wa")
    core = client.CoreV1Api(kube.api_client)
    for name, value in ((SECRET, PASSWORD), ("unrelated-secret", "do-not-read")):
        core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={SECRET_KEY: value})
        )
    objects = render(kube, namespace, server.port, values)
    for manifest in sorted(objects, key=lambda o: o["kind"] == "WorkerAutoscaler"):  # the CR last
        kube.create(manifest, namespace)
    token = kube.service_account_token(namespace, OPERATOR_SA)
    operator = OperatorProcess(
        kubeconfig=kube.service_account_kubeconfig(namespace, OPERATOR_SA),
        namespace=namespace,
        log_path=log_dir / f"operator-{namespace}.log",
        health_port=free_port(),
        metrics_port=free_port(),
    )
    env = Autoscaled(kube, namespace, operator, server, token)
    operator.start()
    return env


def undeploy(env: Autoscaled) -> None:
    code = env.operator.stop()
    log = env.operator.output()
    # The Role was enough: neither kopf nor our own calls ever hit a 403.
    assert "Forbidden" not in log and " 403" not in log, log[-4000:]
    assert code == 0, f"operator exit code {code}\n{log[-4000:]}"
    api = client.CustomObjectsApi(env.kube.api_client)
    try:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, env.namespace, PLURAL, WORKER, {"metadata": {"finalizers": None}}
        )
        api.delete_namespaced_custom_object(GROUP, VERSION, env.namespace, PLURAL, WORKER)
    except ApiException as exc:
        if exc.status != 404:
            raise
