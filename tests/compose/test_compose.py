"""The Compose path of the original README, for real: `make docker-up` with the container engine
that is here (scripts/compose picks it; docs/compose.md), then the README's client flow and the
pages through the one published port, a worker killed during a 30-upload burst, and a
`make docker-down && make docker-up` that keeps every task and result.

One stack for the module, on a free loopback port and under its own Compose project name, so a
developer's own `make docker-up` stack is left alone; removed with its volumes at the end.
Faults are sped up as in tests/cluster/test_faults.py (visibility timeout 15 s, reconciler
after 20 s), through the same IMGPROC_* settings compose.yaml passes on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.fixtures.ports import free_port
from tests.support.images import jpeg, photo
from tests.support.tasks import upload, wait_for_terminal

pytestmark = pytest.mark.timeout(1800)  # the stack builds its images on a new machine

REPO = Path(__file__).resolve().parents[2]
PROJECT = f"imgproc-test-{os.getpid()}"
# The fault settings (production: 3600 s, 90 s, 600 s; kombu's sweep 10 x 10 s).
FAST_FAULTS = {
    "IMGPROC_VISIBILITY_TIMEOUT": "15",
    "IMGPROC_TASK_SOFT_TIME_LIMIT": "8",
    "IMGPROC_TASK_TIME_LIMIT": "10",
    "IMGPROC_UNACKED_RESTORE_INTERVAL": "2",
    "IMGPROC_UNACKED_RESTORE_THROTTLE": "2",
    "IMGPROC_RECONCILE_AFTER_SECONDS": "20",
    "IMGPROC_RECONCILE_INTERVAL_SECONDS": "5",
}
# Two presets: `web` is the default (the legacy contract as it is), `thumb` is asked for by name.
PRESETS = [
    {"name": "web", "width": 800, "height": 600, "formats": ["jpeg"], "default": True},
    {"name": "thumb", "width": 160, "height": 160, "fit": "cover", "formats": ["webp"]},
]
BURST = 30
TIMINGS: dict[str, float] = {}


def _unavailable(reason: str) -> None:
    """A missing engine or image fails under CI and skips elsewhere (tests/conftest.py)."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Stack:
    port: int
    env: dict[str, str]
    engine: str
    flower_password: str
    url: str = ""
    kept: dict[int, str] = field(default_factory=dict)  # task id -> sha256 of its result
    cookies: httpx.Cookies = field(default_factory=httpx.Cookies)

    def make(self, target: str, timeout: float = 1500) -> float:
        started = time.monotonic()
        result = subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - started
        if result.returncode != 0:
            raise AssertionError(
                f"make {target} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            )
        return seconds

    def engine_out(self, *args: str) -> str:
        return subprocess.run(
            [self.engine, *args], capture_output=True, text=True, check=True, env=self.env, timeout=120
        ).stdout

    def containers(self, *, running_only: bool = False) -> list[str]:
        args = ["ps", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "{{.Names}}"]
        if not running_only:
            args.insert(1, "-a")
        return self.engine_out(*args).split()

    def networks(self) -> list[str]:
        names = self.engine_out("network", "ls", "--format", "{{.Name}}").split()
        return [name for name in names if name.startswith(f"{PROJECT}_")]

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, cookies=self.cookies, timeout=60, **kwargs)


def _engine() -> str:
    found = subprocess.run([str(REPO / "scripts" / "compose"), "engine"], capture_output=True, text=True)
    if found.returncode != 0:
        _unavailable(f"needs a container engine with Compose: {found.stderr.strip()}")
    return "docker" if found.stdout.startswith("docker") else "podman"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if os.geteuid() == 0:  # the engine and the local images' tools, as `make test` installs them
        subprocess.run([str(REPO / "scripts" / "system-packages")], check=True)
    engine = _engine()
    if not (shutil.which("buildah") and shutil.which("mmdebstrap")) and not os.environ.get("IMGPROC_POSTGRES_IMAGE"):
        _unavailable("needs buildah and mmdebstrap (scripts/images) for the local stand-ins of the official images")
    port = free_port()
    env = {
        **os.environ,
        **FAST_FAULTS,
        "IMGPROC_PRESETS": json.dumps(PRESETS),
        "IMGPROC_COMPOSE_PROJECT": PROJECT,
        "IMGPROC_HTTP_PORT": str(port),
        "IMGPROC_HTTP_ADDRESS": "127.0.0.1",
    }
    env_file = REPO / ".env"
    made_env_file = not env_file.exists()
    stack = None
    try:
        # Cold for the engine when its store lacks the images; the buildah store stays cached.
        up = Stack(port, env, engine, "").make("docker-up")
        TIMINGS["make docker-up (first)"] = up
        settings = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#")
        )
        stack = Stack(port, env, engine, settings["IMGPROC_FLOWER_PASSWORD"], url=f"http://127.0.0.1:{port}")
        yield stack
    finally:
        Stack(port, env, engine, "").make("docker-purge", timeout=600)
        if made_env_file:
            env_file.unlink(missing_ok=True)
        left = Stack(port, env, engine, "")
        assert not left.containers() and not left.networks() and not listening(port), "the stack left things behind"


@pytest.fixture(scope="module", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    for what, seconds in TIMINGS.items():
        print(f"compose timing: {what}: {seconds:.1f} s")


def test_readme_client_flow_through_the_published_port(stack: Stack) -> None:
    """Upload, isReady until completed, download: the README's three curl commands."""
    with stack.client() as client:
        created = upload(client, jpeg())
        assert created.status_code == 200, created.text
        assert created.json()["message"] == "Task created successfully"
        stack.cookies = client.cookies
        task_id = created.json()["task_id"]
        status = wait_for_terminal(client, task_id, timeout=180)
        assert status["status"] == "completed", f"task {task_id}: {status['status']}: {status.get('error')}"
        assert json.loads(status["metadata"])["original_size"] > 0
        result = client.get(f"/api/tasks/{task_id}/result")
        assert result.status_code == 200
        with Image.open(io.BytesIO(result.content)) as image:
            assert image.format == "JPEG" and image.size == (800, 600)
        stack.kept[task_id] = hashlib.sha256(result.content).hexdigest()


def test_presets_set_in_the_environment_reach_api_and_worker(stack: Stack) -> None:
    """IMGPROC_PRESETS goes through compose.yaml to the API (it accepts `thumb`) and to the
    worker (it makes the 160x160 WebP)."""
    with stack.client() as client:
        assert [p["name"] for p in client.get("/api/presets").json()["items"]] == ["web", "thumb"]
        files = {"file": ("photo.jpg", photo(1200, 900), "image/jpeg")}
        created = client.post("/api/newTask", files=files, data={"presets": "thumb"})
        assert created.status_code == 200, created.text
        status = wait_for_terminal(client, created.json()["task_id"], timeout=180)
        assert status["status"] == "completed", status
        thumb = client.get(f"/api/tasks/{status['id']}/results/thumb.webp")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        with Image.open(io.BytesIO(thumb.content)) as image:
            assert image.size == (160, 160)


def test_pages_docs_and_flower_behind_basic_auth(stack: Stack) -> None:
    with stack.client() as client:
        page = client.get("/frontend/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert client.get("/openapi.json").json()["paths"]
        assert client.get("/").status_code == 200
        assert client.get("/flower/").status_code == 401
        assert client.get("/flower/", auth=("admin", "wrong")).status_code == 401
        flower = client.get("/flower/", auth=("admin", stack.flower_password))
        assert flower.status_code == 200 and "flower" in flower.text.lower()
        # Internal paths stay internal, as with the chart's Ingress.
        assert client.post("/api/webhook/task-complete", content=b"{}").status_code == 404
        assert client.get("/readyz").status_code == 404


def test_an_http10_client_without_host_reaches_the_api(stack: Stack) -> None:
    """HTTP/1.0 lets a client leave Host out (the proxy's health check does); the proxy still
    sends the API the Host HTTP/1.1 requires, so the answer is the API's, not a 400."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head.decode("latin-1")
    assert json.loads(body)["status"] == "healthy"


def test_worker_killed_during_a_burst_every_accepted_task_completes(stack: Stack) -> None:
    """SIGKILL to the worker container's init (tini, and with it Celery and its pool) from the
    host, a third into a 30-upload burst: a crash, not a stop. The restart policy brings the
    container back; what it had taken is re-delivered (visibility timeout) or re-enqueued (the
    reconciler), and every accepted task ends completed."""
    worker = next(name for name in stack.containers() if "worker" in name)
    restarts = int(stack.engine_out("inspect", "--format", "{{.RestartCount}}", worker).strip() or 0)
    accepted: list[int] = []
    with stack.client() as client:
        for number in range(BURST):
            if number == BURST // 3:
                pid = int(stack.engine_out("inspect", "--format", "{{.State.Pid}}", worker).strip())
                os.kill(pid, signal.SIGKILL)
            response = upload(client, photo(2400, 1800), f"burst-{number}.jpg")
            if response.status_code == 200:
                accepted.append(response.json()["task_id"])
            else:
                assert response.status_code in (429, 503), response.text
        assert len(accepted) >= BURST - 2, f"only {len(accepted)} of {BURST} uploads were accepted"
        started = time.monotonic()
        for task_id in accepted:
            status = wait_for_terminal(client, task_id, timeout=max(30.0, 300 - (time.monotonic() - started)))
            assert status["status"] == "completed", f"task {task_id}: {status['status']}: {status.get('error')}"
        TIMINGS["burst: every accepted task completed, after the kill"] = time.monotonic() - started
        after = int(stack.engine_out("inspect", "--format", "{{.RestartCount}}", worker).strip() or 0)
        assert after > restarts, "the restart policy did not restart the killed worker container"
        for task_id in accepted[:3]:
            result = client.get(f"/api/tasks/{task_id}/result")
            assert result.status_code == 200
            stack.kept[task_id] = hashlib.sha256(result.content).hexdigest()


def test_down_and_up_keeps_tasks_and_results(stack: Stack) -> None:
    assert stack.kept, "the earlier tests made no task"
    TIMINGS["make docker-down"] = stack.make("docker-down", timeout=600)
    assert not stack.containers(), "containers left after make docker-down"
    assert not stack.networks(), "networks left after make docker-down"
    assert not listening(stack.port), "the port is still published after make docker-down"
    TIMINGS["make docker-up (warm)"] = stack.make("docker-up")
    with stack.client() as client:
        listed = {task["id"] for task in client.get("/api/tasks", params={"limit": 100}).json()["items"]}
        assert set(stack.kept) <= listed
        for task_id, digest in stack.kept.items():
            assert client.get(f"/api/isReady/{task_id}").json()["status"] == "completed"
            result = client.get(f"/api/tasks/{task_id}/result")
            assert result.status_code == 200 and hashlib.sha256(result.content).hexdigest() == digest
