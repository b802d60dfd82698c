"""The subchart's Sentinel start scripts (redis.sentinel.enabled), rendered by helm and run for
real on loopback with Debian's redis-server: each pod's DNS name becomes an address of its own
in 127.0.0.0/8 (the scripts use fixed ports, 6379 and the sentinel port, on every "pod"), the
paths of the pod (/scripts, /data, /etc/redis) become temp directories. What they must do: a
first install comes up as master + replica watched by three sentinels; a master that is
stopped and started again while the sentinels still name it waits, a replica is promoted, and
the old master rejoins as its replica; sentinels that all restart find the promoted master."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.fixtures.processes import terminate, terminate_all
from tests.support.charts.manifests import named
from tests.support.charts.rendering import NAMESPACE, RELEASE
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

REDIS = f"{RELEASE}-redis"
DOMAIN = f"{NAMESPACE}.svc.cluster.local"
PASSWORD = "scripts-test-password"
VALUES = {"redis": {"replica": {"replicaCount": 1}, "sentinel": {"enabled": True, "downAfterMilliseconds": 1000}}}


class Pods:
    """Runs the rendered scripts as the pods master-0, replicas-0 and sentinel-0..2 would."""

    def __init__(self, scripts: dict[str, str], base: Path) -> None:
        net = f"127.{random.randint(20, 250)}.{random.randint(0, 250)}"
        self.ip = {
            "master-0": f"{net}.2",
            "replicas-0": f"{net}.3",
            **{f"sentinel-{i}": f"{net}.{4 + i}" for i in range(3)},
        }
        self.base = base
        names = {
            f"{REDIS}-sentinel.{DOMAIN}": self.ip["sentinel-0"],  # the Service: one of them will do
            f"{REDIS}-master-0.{DOMAIN}": self.ip["master-0"],
            f"{REDIS}-replicas-0.{DOMAIN}": self.ip["replicas-0"],
        }
        for name, text in scripts.items():
            for dns, ip in names.items():
                text = text.replace(dns, ip)
            text = (
                text.replace("/scripts/", f"{base}/")
                .replace("/etc/redis/redis.conf", "$REDIS_CONF")
                .replace("/data/sentinel.conf", "$DATA/sentinel.conf")
                .replace("dir /data", "dir $DATA")
                .replace("bind * -::*", "bind $SIM_ME")
            )
            # Each "pod" is known by its address, the name it announces.
            text = "\n".join("ME=$SIM_ME" if line.startswith("ME=") else line for line in text.splitlines()) + "\n"
            (base / name).write_text(text)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, pod: str) -> None:
        ip, data = self.ip[pod], self.base / pod
        data.mkdir(exist_ok=True)
        env = {**os.environ, "REDISCLI_AUTH": PASSWORD, "SIM_ME": ip, "DATA": str(data), "HOSTNAME": pod}
        if pod.startswith("sentinel"):
            argv = ["sh", str(self.base / "start-sentinel.sh")]
        else:
            conf = data / "redis.conf"
            conf.write_text(f'port 6379\nbind {ip}\ndir {data}\nsave ""\n')
            env["REDIS_CONF"] = str(conf)
            argv = ["sh", str(self.base / "start-redis.sh"), "master" if pod == "master-0" else "replica"]
        log = (self.base / f"{pod}.log").open("a")
        self.processes[pod] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, pod: str) -> None:
        process = self.processes.pop(pod, None)
        if process is not None:
            terminate(process, timeout=15)

    def stop_all(self) -> None:
        processes, self.processes = list(self.processes.values()), {}
        terminate_all(processes, timeout=15)

    def log(self, pod: str) -> str:
        return (self.base / f"{pod}.log").read_text()

    def client(self, pod: str, port: int = 6379) -> redis.Redis:
        return redis.Redis(host=self.ip[pod], port=port, password=PASSWORD, socket_timeout=1, decode_responses=True)

    def role(self, pod: str) -> str | None:
        try:
            return self.client(pod).role()[0]
        except redis.RedisError:
            return None

    def named_master(self) -> str | None:
        """The pod the sentinels' majority names."""
        votes = []
        for i in range(3):
            try:
                address = self.client(f"sentinel-{i}", 26379).sentinel_get_master_addr_by_name("mymaster")
            except redis.RedisError:
                continue
            if address:
                votes.append(next(p for p, ip in self.ip.items() if ip == address[0]))
        best = max(set(votes), key=votes.count, default=None)
        return best if best is not None and votes.count(best) >= 2 else None


@pytest.fixture
def pods(render, tmp_path):
    data = named(render(VALUES), "ConfigMap", f"{REDIS}-scripts")["data"]
    group = Pods(data, tmp_path)
    yield group
    group.stop_all()


def test_the_start_scripts_fail_over_and_bring_the_old_master_back_as_a_replica(pods):
    for pod in ("sentinel-0", "sentinel-1", "sentinel-2", "master-0", "replicas-0"):  # a first install
        pods.start(pod)
    wait_until(
        lambda: pods.role("master-0") == "master" and pods.role("replicas-0") == "slave", timeout=30, what="first roles"
    )
    wait_until(lambda: pods.named_master() == "master-0", timeout=30, what="the sentinels name master-0")
    wait_until(
        lambda: all(
            len(pods.client(f"sentinel-{i}", 26379).sentinel_sentinels("mymaster")) == 2
            and pods.client(f"sentinel-{i}", 26379).sentinel_slaves("mymaster")
            for i in range(3)
        ),
        timeout=60,
        what="the sentinels know each other and the replica",
    )
    assert "starting as master" in pods.log("master-0")
    master = pods.client("master-0")
    master.rpush("imgproc", "a", "b")
    assert master.execute_command("WAIT", 1, 5000) == 1  # on the replica too, before the restart

    # The master's pod restarts at once, quicker than the sentinels can tell: it must not come
    # back as a master beside the promotion.
    pods.stop("master-0")
    stopped = time.monotonic()
    pods.start("master-0")
    wait_until(lambda: pods.named_master() == "replicas-0", timeout=30, what="replicas-0 promoted")
    promoted = time.monotonic() - stopped
    wait_until(lambda: pods.role("master-0") == "slave", timeout=40, what="master-0 rejoined as a replica")
    log = pods.log("master-0")
    assert "sentinels name this pod as the master; waiting for a failover" in log
    assert f"starting as replica of {pods.ip['replicas-0']}" in log
    assert pods.client("replicas-0").lrange("imgproc", 0, -1) == ["a", "b"]
    print(f"master restarted at once: replica promoted after {promoted:.1f} s")

    # All sentinels restart together (a node drain): they find the promoted master themselves.
    for i in range(3):
        pods.stop(f"sentinel-{i}")
        (pods.base / f"sentinel-{i}" / "sentinel.conf").unlink()
    for i in range(3):
        pods.start(f"sentinel-{i}")
    wait_until(
        lambda: pods.named_master() == "replicas-0", timeout=30, what="restarted sentinels name the promoted master"
    )
    assert all(f"monitoring mymaster at {pods.ip['replicas-0']}:6379" in pods.log(f"sentinel-{i}") for i in range(3))
