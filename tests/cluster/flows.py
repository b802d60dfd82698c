"""What the cluster tests share: a cookie user of a release through the ingress, and TCP probes
run from inside the release's pods (what the NetworkPolicies let through)."""

from __future__ import annotations

import httpx

from tests.fixtures.cluster import LiveCluster, Release


def client(release: Release) -> httpx.Client:
    """A cookie user of the service, through the ingress (one cookie jar per client)."""
    return httpx.Client(base_url=release.url, headers=release.headers, timeout=30)


def upload(user: httpx.Client, data: bytes, name: str = "photo.jpg") -> int:
    response = user.post("/api/newTask", files={"file": (name, data, "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Task created successfully"
    return body["task_id"]



CONNECT = """
import socket, sys
results = {}
for host, port in %r:
    try:
        socket.create_connection((host, port), timeout=3).close()
        results[f"{host}:{port}"] = "open"
    except OSError as error:
        results[f"{host}:{port}"] = type(error).__name__
print(results)
"""


def endpoints(release: Release) -> dict[str, tuple[str, int]]:
    prefix = f"{release.name}-imgproc" if release.name != "imgproc" else "imgproc"
    return {
        "postgresql": (f"{release.name}-postgresql", 5432),
        "redis": (f"{release.name}-redis", 6379),
        "api": (f"{prefix}-api", 8000),
    }


def connect_from_pod(live_cluster: LiveCluster, release: Release, pod: str, targets: list[tuple[str, int]],
                     container: str | None = None) -> dict[str, str]:
    result = live_cluster.exec_python(release.namespace, pod, CONNECT % (targets,), container=container)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip())  # noqa: S307 - our own script's repr of a dict of strings
