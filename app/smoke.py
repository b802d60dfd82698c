"""A real client's round trip against a running API (used by `helm test`)."""

from __future__ import annotations

import io
import sys
import time

import httpx
from PIL import Image


def sample_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1200, 900), (200, 80, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


# A new pod's traffic may be refused for a moment: NetworkPolicy enforcers program a new pod's
# address after it starts (about a second with kube-router on the local cluster).
CONNECT_PATIENCE = 30.0


def first_health_check(client: httpx.Client) -> dict:
    deadline = time.monotonic() + CONNECT_PATIENCE
    while True:
        try:
            return client.get("/").json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def smoke(base_url: str, *, timeout: float) -> int:
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=10) as client:
        health = first_health_check(client)
        if health.get("status") != "healthy":
            print(f"unhealthy: {health}", file=sys.stderr)
            return 1
        created = client.post("/api/newTask", files={"file": ("smoke.jpg", sample_jpeg(), "image/jpeg")})
        created.raise_for_status()
        # The identity cookie is `Secure` in a cluster, and a client keeps those for https; this
        # one talks plain http to the Service from inside, so it hands the cookie back itself.
        client.headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in created.cookies.items())
        client.cookies.clear()
        task_id = created.json()["task_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = client.get(f"/api/isReady/{task_id}").json()
            if status["status"] in ("completed", "failed"):
                break
            time.sleep(1)
        else:
            print(f"task {task_id} did not finish within {timeout}s", file=sys.stderr)
            return 1
        if status["status"] != "completed":
            print(f"task {task_id} failed: {status.get('error')}", file=sys.stderr)
            return 1
        result = client.get(f"/api/tasks/{task_id}/result")
        size = Image.open(io.BytesIO(result.content)).size
        print(f"ok: task {task_id} completed, result {size[0]}x{size[1]}")
        return 0 if size == (800, 600) else 1
