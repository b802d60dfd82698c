"""Test and bench tooling for the autoscaler (not production code).

* ``OperatorProcess``: ``python -m autoscaler`` as a subprocess with its own kubeconfig, ports
  and log file; always stopped with a timeout.
* ``KubeletStandIn``: keeps as many real ``celery worker`` processes running as the worker
  Deployment's ``spec.replicas`` says. Scale-down sends SIGTERM (Celery's warm shutdown, what
  the kubelet does to a pod) to the youngest worker, like a ReplicaSet prefers younger pods, and
  records whether that worker was running a task at that moment ("busy worker removed").
* ``Timeline``: timestamped events plus queue samples, printed as a table.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from kombu import Connection, Consumer, Exchange, Queue
from kombu.message import Message

from autoscaler.queue_reader import QueueReader, RedisSource
from tests.fixtures.processes import terminate

ROOT = Path(__file__).resolve().parents[3]
LOOP_APP = "tests.support.autoscaler.loop_app"


# --------------------------------------------------------------------------- timeline


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, message: str) -> None:
        with self.lock:
            self.events.append((time.monotonic() - self.started, message))

    def first(self, prefix: str) -> float | None:
        return next((t for t, m in self.events if m.startswith(prefix)), None)

    def render(self) -> str:
        return "\n".join(f"{t:7.1f}s  {m}" for t, m in self.events)


# --------------------------------------------------------------------------- the operator


@dataclass
class OperatorProcess:
    """The operator as a real process: ``python -m autoscaler`` (what ``imgproc operator`` runs)."""

    kubeconfig: Path
    namespace: str
    log_path: Path
    health_port: int
    metrics_port: int
    log_format: str = "json"
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPROC_", "KUBERNETES_"))}
        env |= {
            "KUBECONFIG": str(self.kubeconfig),
            "IMGPROC_OPERATOR_NAMESPACE": self.namespace,
            "IMGPROC_OPERATOR_HEALTH_PORT": str(self.health_port),
            "IMGPROC_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "IMGPROC_LOG_FORMAT": self.log_format,
            "IMGPROC_DATA_DIR": str(self.log_path.parent / "operator-data"),
            "PYTHONUNBUFFERED": "1",
        }
        self.log = open(self.log_path, "ab")  # noqa: SIM115  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoscaler"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited with {self.process.returncode}:\n{self.output()}")
            if self.healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"operator not healthy after {timeout}s:\n{self.output()}")

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def stop(self, timeout: float = 20) -> int | None:
        if self.process is None:
            return None
        status = terminate(self.process, timeout=timeout)
        self.log.close()
        return status

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --------------------------------------------------------------------------- the kubelet stand-in


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    started: float

    @property
    def nodename(self) -> str:
        return f"w{self.index}@loop"


@dataclass
class KubeletStandIn:
    """Reconciles local Celery worker processes to ``desired()`` (the Deployment's spec.replicas).

    Only for claims about the operator's decisions, not about pods (tests/k8s/autoscaler/test_loop.py
    says why); pod behaviour is tested on the real cluster (tests/cluster)."""

    desired: Callable[[], int]
    broker_url: str
    results: Path
    timeline: Timeline
    concurrency: int = 2
    task_seconds: float = 1.0
    period: float = 0.25
    workers: list[Worker] = field(default_factory=list)
    stopping: list[Worker] = field(default_factory=list)
    busy_removed: int = 0
    removed: int = 0
    replicas_seen: list[tuple[float, int]] = field(default_factory=list)
    spawned_at: dict[str, float] = field(default_factory=dict)  # nodename -> wall-clock spawn time
    _next: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        (self.results / "results").mkdir(parents=True, exist_ok=True)
        (self.results / "running").mkdir(parents=True, exist_ok=True)

    def start(self) -> KubeletStandIn:
        self._thread = threading.Thread(target=self._run, name="kubelet-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 60) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for worker in self.workers + self.stopping:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers + self.stopping:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(5)

    def busy(self, worker: Worker) -> bool:
        folder = self.results / "running" / worker.nodename
        return folder.exists() and any(folder.iterdir())

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                want = self.desired()
            except Exception as exc:  # the API can hiccup; try again next period
                self.timeline.add(f"kubelet: cannot read replicas: {exc}")
                want = len(self.workers)
            if want != last:
                self.timeline.add(f"deployment spec.replicas = {want}")
                self.replicas_seen.append((time.monotonic(), want))
                last = want
            while len(self.workers) < want:
                self._spawn()
            while len(self.workers) > want:
                self._terminate(self.workers.pop())  # the youngest, like a ReplicaSet
            for worker in list(self.stopping):
                if worker.process.poll() is not None:
                    self.stopping.remove(worker)
                    self.timeline.add(f"worker {worker.nodename} exited ({worker.process.returncode})")
            self._stop.wait(self.period)

    def _spawn(self) -> None:
        self._next += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
        env |= {
            "LOOP_BROKER_URL": self.broker_url,
            "LOOP_RESULTS_DIR": str(self.results),
            "LOOP_TASK_SECONDS": str(self.task_seconds),
            "PYTHONPATH": str(ROOT),
        }
        log = open(self.results / f"worker-{self._next}.log", "ab")  # noqa: SIM115  # owned by the child
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                LOOP_APP,
                "worker",
                "-Q",
                "imgproc",
                "-c",
                str(self.concurrency),
                "-n",
                f"w{self._next}@loop",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(Worker(self._next, process, time.monotonic()))
        self.spawned_at[self.workers[-1].nodename] = time.time()
        self.timeline.add(f"worker w{self._next} started (pid {process.pid}); running {len(self.workers)}")

    def _terminate(self, worker: Worker) -> None:
        busy = self.busy(worker)
        self.removed += 1
        self.busy_removed += busy
        worker.process.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish first
        self.stopping.append(worker)
        self.timeline.add(
            f"worker {worker.nodename} SIGTERM ({'BUSY' if busy else 'idle'}); running {len(self.workers)}"
        )


# --------------------------------------------------------------------------- queue helpers


def queue_sampler(
    broker_url: str,
    timeline: Timeline,
    stop: threading.Event,
    period: float = 1.0,
    samples: list[tuple[float, int, int]] | None = None,
) -> threading.Thread:
    """Adds 'queue: waiting W in-flight F' lines when the numbers change."""
    reader = QueueReader(RedisSource(broker_url, ("imgproc",)))

    def run() -> None:
        last = None
        while not stop.is_set():
            observation = reader.observe()
            now = (observation.waiting, observation.in_flight)
            if samples is not None and observation.ok:
                samples.append((time.monotonic(), observation.waiting or 0, observation.in_flight or 0))
            if now != last:
                timeline.add(f"queue: waiting {now[0]} in-flight {now[1]}")
                last = now
            stop.wait(period)
        reader.close()

    thread = threading.Thread(target=run, name="queue-sampler", daemon=True)
    thread.start()
    return thread


def publish_burst(broker_url: str, n: int) -> list[str]:
    """N real tasks through Celery itself (the loop app's configuration); returns task ids."""
    from tests.support.autoscaler.loop_app import TASK, app

    app.conf.broker_url = broker_url
    ids = [app.send_task(TASK, args=[i]).id for i in range(n)]
    return ids


def celery_publisher(url: str, **transport: Any) -> Celery:
    """Publishing side configured like app/core/celery_app.py (+ priorities)."""
    app = Celery("test-publisher", broker=url, set_as_current=False)
    app.conf.update(
        task_default_queue="imgproc",
        task_queues=[Queue("imgproc", routing_key="imgproc")],
        task_default_routing_key="imgproc",
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"queue_order_strategy": "priority", **transport},
    )
    return app


def publish(url: str, n: int, *, queue: str = "imgproc", priority: int | None = None, **transport: Any) -> None:
    """n Celery-shaped task messages (task imgproc.process_image) published by Celery itself."""
    app = celery_publisher(url, **transport)
    for i in range(n):
        app.send_task("imgproc.process_image", args=[f"id-{i}"], queue=queue, priority=priority)
    app.close()


@contextmanager
def consumed_unacked(url: str, n: int, *, queue: str = "imgproc", **transport: Any) -> Iterator[list[Message]]:
    """Receive n messages the way a worker with acks_late does (delivered, not acked: they
    sit in kombu's unacked hash) and keep them unacknowledged inside the block; ack on exit
    unless already acked."""
    with Connection(url, transport_options=transport) as conn:
        channel = conn.channel()
        channel.basic_qos(0, n, False)
        got: list[Message] = []
        consumer = Consumer(
            channel,
            queues=[Queue(queue, Exchange(queue), routing_key=queue)],
            callbacks=[lambda _body, message: got.append(message)],
            accept=["json"],
        )
        consumer.consume()
        deadline = time.monotonic() + 10
        while len(got) < n and time.monotonic() < deadline:
            conn.drain_events(timeout=2)
        assert len(got) == n, f"received {len(got)} of {n}"
        try:
            yield got
        finally:
            for message in got:
                if not message.acknowledged:
                    message.ack()
            consumer.cancel()


def flush(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()
