"""postgresql.readReplicas.replicaCount=1 on real pods: the replica clones the primary and
streams from it, the API's status reads use it, and the API keeps answering while the replica
pod is deleted and comes back."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from tests.fixtures.cluster import LiveCluster, Release, timed
from tests.support.cluster import client
from tests.support.images import jpeg
from tests.support.tasks import upload_accepted, wait_for_terminal
from tests.support.waiting import wait_until

READ_POD = "imgproc-postgresql-read-0"
PRIMARY_POD = "imgproc-postgresql-0"
STATS_IDLE_SECONDS = 11  # PostgreSQL's PGSTAT_IDLE_INTERVAL (10 s) and a margin

# Run in the API pod, which may reach both (NetworkPolicies): rows committed on the primary one
# at a time, each polled on the replica until it is there.
LAG = """
import json, os, statistics, time
from sqlalchemy import create_engine, text
primary = create_engine(os.environ["IMGPROC_DATABASE_URL"], isolation_level="AUTOCOMMIT")
replica = create_engine(os.environ["IMGPROC_DATABASE_REPLICA_URL"], isolation_level="AUTOCOMMIT")
with primary.connect() as p, replica.connect() as r:
    p.execute(text("CREATE TABLE IF NOT EXISTS replica_probe (id serial PRIMARY KEY)"))
    while r.execute(text("SELECT to_regclass('replica_probe')")).scalar() is None:
        time.sleep(0.001)
    lags = []
    for _ in range(50):
        row = p.execute(text("INSERT INTO replica_probe DEFAULT VALUES RETURNING id")).scalar()
        started = time.monotonic()
        while not r.execute(text("SELECT count(*) FROM replica_probe WHERE id = :i"), {"i": row}).scalar():
            if time.monotonic() - started > 10:
                raise SystemExit(f"row {row} not on the replica after 10 s")
        lags.append(time.monotonic() - started)
    p.execute(text("DROP TABLE replica_probe"))
print(json.dumps({"median_ms": statistics.median(lags) * 1000, "max_ms": max(lags) * 1000}))
"""


def _psql(live_cluster: LiveCluster, release: Release, pod: str, sql: str) -> str:
    return live_cluster.kubectl(
        "exec",
        "-n",
        release.namespace,
        pod,
        "-c",
        "postgresql",
        "--",
        "psql",
        "-U",
        "postgres",
        "-d",
        "imgproc",
        "-tAc",
        sql,
    ).stdout.strip()


def _task_reads(live_cluster: LiveCluster, release: Release) -> int:
    """Scans of the tasks table run on the replica, by index or not (the status routes' task
    reads; the lag checks touch no table)."""
    return int(
        _psql(
            live_cluster,
            release,
            READ_POD,
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'tasks'",
        )
    )


def _settled_task_reads(live_cluster: LiveCluster, release: Release) -> int:
    """_task_reads() once the counts of requests already answered are all published: a backend
    publishes within STATS_IDLE_SECONDS of going idle, so a count unchanged for longer is final."""
    deadline = time.monotonic() + 60
    value, since = _task_reads(live_cluster, release), time.monotonic()
    while time.monotonic() - since <= STATS_IDLE_SECONDS:
        assert time.monotonic() < deadline, "the replica's task reads never settled"
        time.sleep(1)
        if (now := _task_reads(live_cluster, release)) != value:
            value, since = now, time.monotonic()
    return value


def _ready_seconds(pod: dict) -> float:
    """From the pod's creation to its Ready condition."""
    conditions = {c["type"]: c["lastTransitionTime"] for c in pod["status"]["conditions"]}
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(conditions["Ready"]) - parse(pod["metadata"]["creationTimestamp"])).total_seconds()


@pytest.fixture(scope="module")
def release(live_cluster: LiveCluster) -> Iterator[Release]:
    installed = live_cluster.install(
        live_cluster.new_namespace("pg-read"),
        "--set",
        "postgresql.readReplicas.replicaCount=1",
        "--set",
        "api.replicaCount=1",
        "--set",
        "autoscaler.maxReplicaCount=1",
        # Status polls of finished tasks come from the replica as soon as it has them.
        "--set-json",
        'config.extraEnv={"IMGPROC_DATABASE_REPLICA_CHECK_SECONDS": "0.5"}',
    )
    yield installed
    installed.helm("uninstall", installed.name, "--wait", check=False)


def test_the_replica_streams_and_the_api_reads_from_it(release: Release, live_cluster: LiveCluster):
    (replica,) = release.pods("read-replica")
    assert replica["metadata"]["name"] == READ_POD
    assert all(s["ready"] for s in replica["status"]["containerStatuses"])
    clone_log = live_cluster.kubectl("logs", "-n", release.namespace, READ_POD, "-c", "clone").stdout
    assert "cloned the primary in" in clone_log, clone_log
    assert _psql(live_cluster, release, READ_POD, "SELECT pg_is_in_recovery()") == "t"
    assert _psql(live_cluster, release, READ_POD, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    assert (
        _psql(live_cluster, release, PRIMARY_POD, "SELECT usename || ' ' || state FROM pg_stat_replication")
        == "replicator streaming"
    )

    # A row written on the primary appears on the replica (psql in each pod).
    _psql(live_cluster, release, PRIMARY_POD, "CREATE TABLE probe (note text); INSERT INTO probe VALUES ('hello')")
    deadline = time.monotonic() + 10
    while (
        _psql(live_cluster, release, READ_POD, "SELECT to_regclass('probe') IS NOT NULL") != "t"
        or _psql(live_cluster, release, READ_POD, "SELECT note FROM probe") != "hello"
    ):
        assert time.monotonic() < deadline, "the row never reached the replica"
        time.sleep(0.2)
    _psql(live_cluster, release, PRIMARY_POD, "DROP TABLE probe")
    (api,) = release.pods("api")
    measured = live_cluster.exec_python(release.namespace, api["metadata"]["name"], LAG)
    assert measured.returncode == 0, measured.stderr
    lag = json.loads(measured.stdout)

    with client(release) as user:
        task_id = upload_accepted(user, jpeg(1200, 900))
        assert wait_for_terminal(user, task_id, timeout=120)["status"] == "completed"
        # The replica has the outcome: the next polls are its.
        wait_until(
            lambda: (
                _psql(live_cluster, release, READ_POD, f"SELECT status FROM tasks WHERE id = {task_id}") == "completed"
            ),
            timeout=30,
            interval=0.2,
            what="the completed task on the replica",
        )
        reads_before = _settled_task_reads(live_cluster, release)
        for _ in range(20):
            assert user.get(f"/api/isReady/{task_id}").json()["status"] == "completed"
            assert user.get(f"/api/tasks/{task_id}").json()["status"] == "completed"
            assert [t["id"] for t in user.get("/api/tasks").json()["items"]] == [task_id]
    # Each of the 60 polls read its task or list on the replica (the cookie's user is looked up
    # once: app.api.deps.KnownUsers). A backend publishes its counters when idle (PostgreSQL
    # flushes them within 10 s), hence the wait.
    deadline = time.monotonic() + 20
    while (reads := _task_reads(live_cluster, release) - reads_before) < 60:
        assert time.monotonic() < deadline, f"{reads} task reads on the replica for 60 status reads"
        time.sleep(1)
    cloned = next(line for line in clone_log.splitlines() if line.startswith("cloned the primary in"))
    print(
        f"\nreplica pod Ready {_ready_seconds(replica):.0f} s after creation ({cloned}, after waiting for the"
        " primary);"
        f" commit-to-visible on the replica: median {lag['median_ms']:.1f} ms, max {lag['max_ms']:.1f} ms"
        f" (50 rows, from the API pod); {reads} task reads on the replica for 60 status reads"
    )


def test_the_api_keeps_answering_while_the_replica_pod_is_replaced(release: Release, live_cluster: LiveCluster):
    with client(release) as user:
        task_id = upload_accepted(user, jpeg(800, 600))
        assert wait_for_terminal(user, task_id, timeout=120)["status"] == "completed"
        failures: list[str] = []
        answered = 0
        stop = threading.Event()

        def poll() -> None:
            nonlocal answered
            while not stop.is_set():
                for path in (f"/api/isReady/{task_id}", f"/api/tasks/{task_id}", "/api/tasks"):
                    try:
                        response = user.get(path)
                    except httpx.HTTPError as error:  # a failure too, and the polling goes on
                        failures.append(f"{path}: {type(error).__name__}: {error}")
                        continue
                    if response.status_code != 200:
                        failures.append(f"{path}: {response.status_code}")
                    answered += 1
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            with timed("postgresql read replica: pod deleted until Ready again"):
                started = time.monotonic()
                live_cluster.kubectl("delete", "pod", "-n", release.namespace, READ_POD, "--wait=false")
                live_cluster.kubectl(
                    "wait",
                    "-n",
                    release.namespace,
                    "--for=delete",
                    f"pod/{READ_POD}",
                    "--timeout=120s",
                    check=False,
                    timeout=130,
                )
                live_cluster.kubectl(
                    "wait",
                    "-n",
                    release.namespace,
                    "--for=condition=Ready",
                    f"pod/{READ_POD}",
                    "--timeout=180s",
                    timeout=190,
                )
                back = time.monotonic() - started
            at_back = answered  # and polls once it is back
            wait_until(
                lambda: answered >= at_back + 30, timeout=60, interval=0.2, what="30 polls after the replica is back"
            )
        finally:
            stop.set()
            poller.join(30)
        assert not poller.is_alive(), "the poller did not stop"
    assert not failures, failures[:10]
    assert answered > 0
    clone_log = live_cluster.kubectl("logs", "-n", release.namespace, READ_POD, "-c", "clone").stdout
    assert "following the primary" in clone_log  # its volume kept the copy: it only caught up
    assert _psql(live_cluster, release, READ_POD, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    print(f"\nreplica pod deleted: back Ready in {back:.0f} s; {answered} status reads meanwhile, all 200")
