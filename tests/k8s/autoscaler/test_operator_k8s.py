"""The operator end to end: real kube-apiserver, real Redis (with a password from a Secret),
the chart's CRD, RBAC, worker Deployment and WorkerAutoscaler (rendered by helm), and the
operator as a real process (``python -m autoscaler``) authenticated as the chart's operator
ServiceAccount. No kubelet: pods never run, only spec.replicas moves (test_loop.py adds
real workers)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from autoscaler import GROUP, PLURAL, VERSION
from tests.fixtures.kube import KubeTestBed
from tests.support.autoscaler.harness import ROOT, consumed_unacked, publish
from tests.support.autoscaler.k8s_env import POLL, RELEASE, SECRET, WORKER, Autoscaled, require_password

# --------------------------------------------------------------------------- RBAC


def test_operator_role_allows_what_it_needs_and_nothing_more(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=0)
    ns, can = env.namespace, env.kube.can_i
    allowed = [
        ("get", "deployments", "apps", "scale", WORKER),
        ("patch", "deployments", "apps", "scale", WORKER),
        ("patch", PLURAL, GROUP, "status", WORKER),
        ("watch", PLURAL, GROUP, "", ""),
        ("patch", PLURAL, GROUP, "", WORKER),
        ("get", "secrets", "", "", SECRET),
        ("create", "events", "", "", ""),
        ("list", PLURAL, GROUP, "", ""),  # the pre-delete hook (imgproc operator --uninstall)
        ("delete", PLURAL, GROUP, "", WORKER),
    ]
    denied = [
        ("delete", "deployments", "apps", "", WORKER),
        ("patch", "deployments", "apps", "", WORKER),  # only through /scale
        ("update", "deployments", "apps", "", WORKER),
        ("patch", "deployments", "apps", "scale", "some-other-deployment"),
        ("get", "secrets", "", "", "unrelated-secret"),
        ("list", "secrets", "", "", ""),
        ("create", "pods", "", "", ""),
        ("create", PLURAL, GROUP, "", ""),
        ("update", "roles", "rbac.authorization.k8s.io", "", ""),
    ]
    for verb, resource, group, sub, name in allowed:
        assert can(env.token, verb, resource, ns, group=group, subresource=sub, name=name), (verb, resource)
    for verb, resource, group, sub, name in denied:
        assert not can(env.token, verb, resource, ns, group=group, subresource=sub, name=name), (verb, sub)
    assert not can(env.token, "get", PLURAL, "default", group=GROUP)  # other namespaces
    assert not can(env.token, "list", "namespaces", "")  # nothing cluster-wide
    assert not can(env.token, "list", "customresourcedefinitions", "", group="apiextensions.k8s.io")
    # ...and with exactly this, the operator works (the fixture checks its log for 403s).
    env.eventually(lambda: env.condition("Ready") == "True", 15, "Ready=True")


# --------------------------------------------------------------------------- scaling


def test_backlog_scales_up_within_two_polling_intervals(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=0, max=10, up_step=10)
    env.eventually(lambda: env.condition("Ready") == "True", 15, "first poll")
    publish(env.broker, 7, priority=5)  # into the priority sub-list "imgproc\x06\x163"
    took = env.eventually(lambda: env.replicas() == math.ceil(7 / 2), 10, "replicas 4")
    print(f"backlog 7 -> replicas 4 after {took:.2f}s (pollingInterval {POLL}s)")
    assert took <= 2 * POLL + 1.0  # two intervals, plus API round trips on a shared machine
    env.eventually(lambda: env.status().get("desiredReplicas") == 4, 5, "status written")
    status = env.status()
    assert (status["backlog"], status["inFlight"], status["recommendation"]) == (7, 0, 4)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Active": "True",
        "Fallback": "False",
        "Paused": "False",
    }
    assert status["lastScaleTime"] and status["lastActiveTime"]
    env.eventually(lambda: any(r == "ScaledUp" and "-> 4" in m for _, r, m in env.events()), 10, "event")
    metrics = env.operator.metrics()
    assert f'imgproc_autoscaler_backlog{{name="{WORKER}",namespace="{env.namespace}"}} 7.0' in metrics
    assert 'imgproc_autoscaler_scale_events_total{direction="up"' in metrics


def test_in_flight_work_keeps_replicas_then_scale_to_zero(autoscaled: Callable[..., Autoscaled]) -> None:
    window, cooldown = 3, 2
    env = autoscaled(min=0, down_window=window, down_step=10, cooldown=cooldown)
    publish(env.broker, 6)
    env.eventually(lambda: env.replicas() == 3, 10, "replicas 3 for 6 waiting")
    with consumed_unacked(env.broker, 6) as messages:  # the list is empty, six tasks "running"
        env.eventually(
            lambda: env.status().get("inFlight") == 6 and env.status().get("backlog") == 0, 5, "in-flight observed"
        )
        env.holds(lambda: env.replicas() == 3, window + 3 * POLL, "busy workers must keep their pods")
        for message in messages[:4]:
            message.ack()
        took = env.eventually(lambda: env.replicas() == 1, window + 4 * POLL, "down to the busy worker")
        assert took >= window - POLL, f"scaled down after {took:.1f}s, inside the {window}s window"
    emptied = time.monotonic()
    env.eventually(lambda: env.replicas() == 0, window + cooldown + 4 * POLL, "scale to zero")
    assert time.monotonic() - emptied >= cooldown - POLL
    env.eventually(lambda: env.condition("Active") == "False", 5, "Active=False")
    env.eventually(lambda: {"ScaledUp", "ScaledDown"} <= {r for _, r, _ in env.events()}, 5, "events")


def test_max_replica_count_is_respected(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1, max=3, fallback=1)
    publish(env.broker, 100)
    env.eventually(lambda: env.replicas() == 3, 10, "capped at 3")
    env.holds(lambda: env.replicas() == 3, 3 * POLL, "stays at max")
    assert env.status()["recommendation"] == 3 and env.status()["backlog"] == 100


def test_redis_down_falls_back_and_recovers(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1, failure_threshold=2, fallback=5, down_window=0)
    env.eventually(lambda: env.condition("Ready") == "True", 15, "first poll")
    assert env.replicas() == 1
    env.redis.stop()
    env.eventually(lambda: env.condition("Fallback") == "True" and env.replicas() == 5, 10, "fallback")
    assert env.condition("Ready") == "False" and env.status()["consecutiveFailures"] >= 2
    expected = {("Warning", "RedisUnavailable"), ("Warning", "FallbackActivated")}
    env.eventually(lambda: expected <= {(t, r) for t, r, _ in env.events()}, 5, "events")
    env.redis.start()
    require_password(env.redis)
    env.eventually(lambda: env.condition("Fallback") == "False" and env.replicas() == 1, 15, "recovered")
    assert env.condition("Ready") == "True"
    env.eventually(lambda: ("Normal", "Recovered") in [(t, r) for t, r, _ in env.events()], 5, "event")


def test_pause_annotations(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1, down_window=0)
    env.eventually(lambda: env.condition("Ready") == "True", 15, "first poll")
    env.annotate({"autoscaling.imgproc.dev/paused": "true"})
    env.eventually(lambda: env.condition("Paused") == "True", 5, "Paused=True")
    publish(env.broker, 10)
    env.holds(lambda: env.replicas() == 1, 3 * POLL, "paused: no change despite the backlog")
    env.annotate({"autoscaling.imgproc.dev/paused-replicas": "2"})
    env.eventually(lambda: env.replicas() == 2, 5, "paused-replicas")
    env.holds(lambda: env.replicas() == 2, 2 * POLL, "held at paused-replicas")
    env.annotate({"autoscaling.imgproc.dev/paused": None, "autoscaling.imgproc.dev/paused-replicas": None})
    env.eventually(lambda: env.replicas() == 5 and env.condition("Paused") == "False", 5, "resumed")
    # kopf posts events from a background queue: they may trail the status by a moment.
    env.eventually(lambda: {"Paused", "Resumed"} <= {r for _, r, _ in env.events()}, 5, "Paused/Resumed events")


def test_invalid_annotation_is_reported_not_acted_on(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1)
    env.eventually(lambda: env.condition("Ready") == "True", 15, "first poll")
    env.annotate({"autoscaling.imgproc.dev/paused-replicas": "many"})
    env.eventually(lambda: env.condition("Ready") == "False", 5, "Ready=False")
    ready = next(c for c in env.status()["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and "paused-replicas" in ready["message"]
    assert ("Warning", "InvalidSpec") in [(t, r) for t, r, _ in env.events()]
    assert env.replicas() == 1


def test_shutdown_releases_the_finalizer_and_logs_are_json(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1)
    env.eventually(
        lambda: "autoscaling.imgproc.dev/finalizer" in env.obj()["metadata"].get("finalizers", []),
        15,
        "kopf's finalizer",
    )
    assert env.operator.stop() == 0
    assert "autoscaling.imgproc.dev/finalizer" not in env.obj()["metadata"].get("finalizers", [])
    client.CustomObjectsApi(env.kube.api_client).delete_namespaced_custom_object(
        GROUP, VERSION, env.namespace, PLURAL, WORKER
    )  # no operator running: must not hang
    with pytest.raises(ApiException) as gone:
        env.obj()
    assert gone.value.status == 404
    lines = [line for line in env.operator.output().splitlines() if line.strip()]
    assert lines and all(json.loads(line)["message"] is not None for line in lines)


# --------------------------------------------------------------------------- the CRD itself


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"minReplicaCount": 5, "maxReplicaCount": 2}, "minReplicaCount must not exceed maxReplicaCount"),
        ({"redis": {"url": "redis://a", "host": "b"}}, "exactly one of redis.url and redis.host"),
        ({"fallback": {"replicas": 50}}, "fallback.replicas must lie within"),
        ({"tasksPerReplica": 0}, "tasksPerReplica"),
        ({"unknownField": 1}, "unknown field"),
    ],
    ids=["min-above-max", "url-and-host", "fallback-out-of-range", "zero-tasks-per-replica", "unknown-field"],
)
def test_crd_rejects_invalid_specs(kube: KubeTestBed, crd: dict, patch: dict, fragment: str) -> None:
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"name": "w"}, "redis": {"host": "r"}} | patch,
    }
    with pytest.raises(ApiException) as rejected:
        kube.create(manifest, "default", dry_run=True)
    assert rejected.value.status in (400, 422) and fragment in str(rejected.value.body)


def test_crd_defaults_and_printer_columns(kube: KubeTestBed, crd: dict) -> None:
    spec = {"scaleTargetRef": {"name": "w"}, "redis": {"host": "r"}}
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "WorkerAutoscaler", "metadata": {"name": "x"}, "spec": spec}
    created = kube.create(manifest, "default", dry_run=True).to_dict()
    spec = created["spec"]
    assert (spec["tasksPerReplica"], spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 0, 10)
    assert (spec["pollingInterval"], spec["cooldownPeriod"], spec["queues"]) == (5, 60, ["imgproc"])
    assert spec["scaleUp"] == {"stabilizationWindowSeconds": 0}
    assert spec["scaleDown"] == {"stabilizationWindowSeconds": 60}
    assert spec["redis"] == {"host": "r", "port": 6379, "db": 0, "tls": False, "keyPrefix": ""}
    printed = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    columns = [c["name"] for c in printed if not c.get("priority")]
    assert columns == ["Target", "Backlog", "In-Flight", "Desired", "Current", "Active", "Age"]


def test_missing_target_is_reported_and_recovers(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1)
    env.eventually(lambda: env.condition("Ready") == "True", 15, "first poll")
    apps = client.AppsV1Api(env.kube.api_client)
    deployment = apps.read_namespaced_deployment(WORKER, env.namespace)
    apps.delete_namespaced_deployment(WORKER, env.namespace)
    env.eventually(lambda: env.condition("Ready") == "False", 5, "Ready=False")
    ready = next(c for c in env.status()["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ScaleTargetNotFound"
    deployment.metadata = client.V1ObjectMeta(name=WORKER, labels=deployment.metadata.labels)
    apps.create_namespaced_deployment(env.namespace, deployment)
    env.eventually(lambda: env.condition("Ready") == "True", 5, "recovered")
    expected = {("Warning", "ScaleTargetNotFound"), ("Normal", "Recovered")}
    env.eventually(lambda: expected <= {(t, r) for t, r, _ in env.events()}, 5, "events")


def test_deleting_the_autoscaler_while_running(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1)
    env.eventually(
        lambda: "autoscaling.imgproc.dev/finalizer" in env.obj()["metadata"].get("finalizers", []),
        15,
        "kopf's finalizer",
    )
    env.eventually(lambda: f'name="{WORKER}"' in env.operator.metrics(), 10, "metric series")
    client.CustomObjectsApi(env.kube.api_client).delete_namespaced_custom_object(
        GROUP, VERSION, env.namespace, PLURAL, WORKER
    )

    def gone() -> bool:
        try:
            env.obj()
        except ApiException as exc:
            return exc.status == 404
        return False

    env.eventually(gone, 10, "deleted (kopf stops the daemon and drops its finalizer)")
    env.eventually(lambda: f'name="{WORKER}"' not in env.operator.metrics(), 5, "metric series dropped")
    assert env.replicas() == 1  # deleting the autoscaler leaves the Deployment as it is


# --------------------------------------------------------------------------- the chart's pre-delete hook

FINALIZER = "autoscaling.imgproc.dev/finalizer"


def uninstall(env: Autoscaled, timeout: float) -> subprocess.CompletedProcess:
    """``imgproc operator --uninstall`` as the chart's hook runs it: the operator's ServiceAccount."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPROC_", "KUBERNETES_"))}
    environ |= {"KUBECONFIG": str(env.operator.kubeconfig), "IMGPROC_OPERATOR_NAMESPACE": env.namespace}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "operator",
            "--uninstall",
            f"app.kubernetes.io/instance={RELEASE}",
            "--timeout",
            str(timeout),
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )


def gone(env: Autoscaled) -> bool:
    try:
        env.obj()
    except ApiException as exc:
        return exc.status == 404
    return False


def test_uninstall_hook_lets_the_running_operator_release_its_autoscaler(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1)
    env.eventually(lambda: FINALIZER in env.obj()["metadata"].get("finalizers", []), 15, "kopf's finalizer")
    started = time.monotonic()
    done = uninstall(env, timeout=30)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert gone(env)
    assert "removing its finalizer" not in done.stdout + done.stderr  # the operator itself released it
    assert took < 20, f"{took:.1f}s"
    assert env.replicas() == 1  # the Deployment is helm's to delete, not the hook's


def test_uninstall_hook_removes_a_finalizer_no_operator_will_release(autoscaled: Callable[..., Autoscaled]) -> None:
    env = autoscaled(min=1)
    env.eventually(lambda: FINALIZER in env.obj()["metadata"].get("finalizers", []), 15, "kopf's finalizer")
    assert env.operator.stop() == 0
    # What an operator that lost its credentials leaves behind (helm uninstall without the hook).
    client.CustomObjectsApi(env.kube.api_client).patch_namespaced_custom_object(
        GROUP, VERSION, env.namespace, PLURAL, WORKER, {"metadata": {"finalizers": [FINALIZER]}}
    )
    done = uninstall(env, timeout=2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no operator released it" in done.stdout + done.stderr
    assert gone(env)
