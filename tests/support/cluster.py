"""What the cluster tests share: a cookie user of a release through the ingress, and TCP probes
run from inside the release's pods (what the NetworkPolicies let through)."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.fixtures.cluster import LiveCluster, Release
from tests.fixtures.ledger import LedgerSource, ledger


def client(release: Release) -> httpx.Client:
    """A cookie user of the service, through the ingress (one cookie jar per client)."""
    return httpx.Client(base_url=release.url, headers=release.headers, timeout=30)


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


def connect_from_pod(
    live_cluster: LiveCluster, release: Release, pod: str, targets: list[tuple[str, int]], container: str | None = None
) -> dict[str, str]:
    result = live_cluster.exec_python(release.namespace, pod, CONNECT % (targets,), container=container)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip())  # noqa: S307 - our own script's repr of a dict of strings


class Burst:
    """Uploads from several cookie users at once, in threads, as a client that follows the
    service's contract: a 429 or 503 with Retry-After is waited out and the same upload sent
    again; a connection that fails (a pod going away under it) is retried. Everything else
    that is not 200 counts as a server error. Bounded: `count` uploads per user, `seconds` wall
    time."""

    def __init__(
        self,
        release: Release,
        data: bytes | list[bytes],
        *,
        users: int = 3,
        count: int = 10,
        seconds: float = 120,
        pause: float = 0.0,
    ) -> None:
        self.release = release
        self.images = data if isinstance(data, list) else [data]
        self.users = [client(release) for _ in range(users)]
        self.count, self.seconds, self.pause = count, seconds, pause
        self.accepted: list[tuple[httpx.Client, int]] = []
        self.refused: dict[int, int] = {}  # status -> how many (429, 503 with Retry-After)
        self.server_errors: list[str] = []
        self.transport_errors = 0
        self._threads = [threading.Thread(target=self._send, args=(user,), daemon=True) for user in self.users]
        self.started = 0.0

    def __enter__(self) -> Burst:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.join()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=self.seconds + 30)

    @property
    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self._threads)

    def _send(self, user: httpx.Client) -> None:
        deadline = self.started + self.seconds
        sent = 0
        while sent < self.count and time.monotonic() < deadline:
            data = self.images[sent % len(self.images)]
            try:
                response = user.post("/api/newTask", files={"file": ("burst.jpg", data, "image/jpeg")})
            except httpx.TransportError:
                self.transport_errors += 1
                time.sleep(0.5)
                continue
            if response.status_code == 200:
                self.accepted.append((user, response.json()["task_id"]))
                sent += 1
                time.sleep(self.pause)
            elif response.status_code in (429, 503) and response.headers.get("Retry-After"):
                self.refused[response.status_code] = self.refused.get(response.status_code, 0) + 1
                time.sleep(min(float(response.headers["Retry-After"]), 2.0))
            else:
                self.server_errors.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(0.5)

    def owners(self) -> dict[int, httpx.Client]:
        return {task_id: user for user, task_id in self.accepted}

    def ids(self) -> list[int]:
        return [task_id for _, task_id in self.accepted]

    def close(self) -> None:
        for user in self.users:
            user.close()

    def ledger(self, source: LedgerSource, name: str, *, faults: int = 1, timeout: float = 240) -> dict[str, Any]:
        """Waits for the burst to end, then its ledger (tests.fixtures.ledger.ledger: recorded,
        then asserted) with the burst's refusals, server and transport errors; closes the users."""
        self.join()
        try:
            return ledger(
                source,
                self.owners(),
                self.ids(),
                name=name,
                faults=faults,
                timeout=timeout,
                refused=self.refused.get(503, 0),
                server_errors=len(self.server_errors),
                started=self.started,
                rate_limited=self.refused.get(429, 0),
                transport_errors=self.transport_errors,
            )
        except AssertionError as error:
            if self.server_errors:
                raise AssertionError(f"{error}\nserver errors: {self.server_errors[:10]}") from error
            raise
        finally:
            self.close()
