"""The `external*` values on real pods: PostgreSQL and Redis run outside the release (their own
namespace, as a managed service would be), the chart is installed with both subcharts off, and
the service works end to end through the ingress."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.fixtures.cluster import LiveCluster, Release
from tests.support.cluster import client
from tests.support.images import decode, jpeg
from tests.support.tasks import upload_accepted, wait_for_terminal

RESTRICTED = {
    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


def database_servers(namespace: str, password: str) -> list[dict]:
    """PostgreSQL and Redis Deployments + Services from the local images, restricted pods."""

    def server(name: str, image: str, uid: int, port: int, env: list[dict], args: list[str] | None) -> list[dict]:
        container = {
            "name": name,
            "image": image,
            "imagePullPolicy": "Never",
            "env": env,
            "ports": [{"containerPort": port}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "run", "mountPath": "/var/run/postgresql"},
            ],
            **RESTRICTED,
        }
        if args:
            container["args"] = args
        return [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": uid,
                                "runAsGroup": uid,
                                "fsGroup": uid,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "run", "emptyDir": {}}],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
            },
        ]

    return [
        *server(
            "postgres",
            "localhost/imgproc-postgres:15-debian",
            70,
            5432,
            [
                {"name": "POSTGRES_USER", "value": "imgproc"},
                {"name": "POSTGRES_DB", "value": "imgproc"},
                {"name": "POSTGRES_PASSWORD", "value": password},
                {"name": "PGDATA", "value": "/data/pgdata"},
            ],
            None,
        ),
        *server(
            "redis",
            "localhost/imgproc-redis:7-debian",
            999,
            6379,
            [],
            ["redis-server", "--requirepass", password, "--dir", "/data", "--appendonly", "yes"],
        ),
    ]


@pytest.fixture(scope="module")
def external_release(live_cluster: LiveCluster) -> Iterator[Release]:
    servers = live_cluster.new_namespace("external-db")
    password = secrets.token_hex(16)
    live_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": database_servers(servers, password)}),
    )
    for name in ("postgres", "redis"):
        live_cluster.kubectl("rollout", "status", "-n", servers, f"deploy/{name}", "--timeout=180s", timeout=200)
    namespace = live_cluster.new_namespace("chart-ext")
    release = live_cluster.install(
        namespace,
        "--set",
        "postgresql.enabled=false",
        "--set",
        f"externalDatabase.host=postgres.{servers}.svc.cluster.local",
        "--set",
        f"externalDatabase.password={password}",
        "--set",
        "redis.enabled=false",
        "--set",
        f"externalRedis.host=redis.{servers}.svc.cluster.local",
        "--set",
        f"externalRedis.password={password}",
        "--set",
        "api.replicaCount=1",
    )
    yield release
    release.helm("uninstall", release.name, "--wait", check=False)


def test_the_service_works_on_external_postgresql_and_redis(external_release: Release, live_cluster: LiveCluster):
    components = {
        p["metadata"]["labels"].get("app.kubernetes.io/component")
        for p in live_cluster.get("pods", "-n", external_release.namespace)["items"]
    }
    assert "primary" not in components and "master" not in components, components
    with client(external_release) as user:
        task_id = upload_accepted(user, jpeg(1200, 900))
        status = wait_for_terminal(user, task_id, timeout=120)
        assert status["status"] == "completed", status
        assert decode(user.get(f"/api/tasks/{task_id}/result").content).size == (800, 600)
    result = external_release.helm("test", external_release.name, "--logs", timeout=300)
    assert "Phase:          Succeeded" in result.stdout, result.stdout
