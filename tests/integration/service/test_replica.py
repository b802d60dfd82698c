"""API + worker processes on a primary with a real streaming replica: polling clients never see
a 404 for their new task nor a status going backwards, whether the replica streams, is paused
(`pg_wal_replay_pause()`) or is stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy import create_engine, text

from bench.loadtest import UNLIMITED
from tests.fixtures.redis import fresh_redis_db
from tests.fixtures.services import ServiceStack, running_stack, server_env
from tests.support import images
from tests.support.tasks import TERMINAL, upload_accepted
from tests.support.waiting import wait_until

USERS, TASKS_PER_USER = 20, 5
PAUSE = 6  # seconds the replica stops replaying
RANK = {"pending": 0, "processing": 1, "completed": 2, "failed": 2}


@dataclass
class Poller:
    """One cookie user: uploads its tasks, then polls all three status routes until each of its
    tasks is finished, recording what it was told."""

    stack: ServiceStack
    seen: dict[int, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    requests: int = 0

    def _status(self, client: httpx.Client, path: str) -> dict:
        response = client.get(path)
        self.requests += 1
        if response.status_code != 200:
            self.problems.append(f"{path}: {response.status_code} {response.text[:100]}")
            return {}
        return response.json()

    def _saw(self, task_id: int, status: str) -> None:
        history = self.seen.setdefault(task_id, [])
        if history and RANK[status] < RANK[history[-1]]:
            self.problems.append(f"task {task_id} went back: {history[-1]} -> {status}")
        if not history or history[-1] != status:
            history.append(status)

    def upload(self, client: httpx.Client) -> None:
        task_id = upload_accepted(client, images.jpeg(320, 240), "p.jpg")
        self.seen[task_id] = []
        # At once, as a client does: the replica has not seen the task yet.
        self._saw(task_id, self._status(client, f"/api/isReady/{task_id}").get("status", "pending"))

    def poll(self, client: httpx.Client) -> None:
        """Every task of this user once on each single-task route (finished ones too: a status
        must not go back after it was completed), and the list."""
        for task_id in self.seen:
            for path in (f"/api/isReady/{task_id}", f"/api/tasks/{task_id}"):
                if status := self._status(client, path).get("status"):
                    self._saw(task_id, status)
        for item in self._status(client, "/api/tasks?limit=100").get("items", []):
            self._saw(item["id"], item["status"])

    def poll_until_finished(self, client: httpx.Client, deadline: float, settled: threading.Event) -> None:
        """Until every task is finished and the replica's episode is over, then once more."""
        while time.monotonic() < deadline:
            self.poll(client)
            if settled.is_set() and all(h and h[-1] in TERMINAL for h in self.seen.values()):
                self.poll(client)
                return
            time.sleep(0.1)
        self.problems.append(f"unfinished at the deadline: {self.seen}")


def run_users(
    stack: ServiceStack, *, between_rounds: Callable[[int], None], settled: threading.Event, timeout: float = 120
) -> list[Poller]:
    """USERS threads upload TASKS_PER_USER tasks each, in rounds (``between_rounds(n)`` runs
    once all users finished round n), polling all their tasks after each upload, then poll
    until everything is finished and ``settled`` is set."""
    pollers = [Poller(stack) for _ in range(USERS)]
    barrier = threading.Barrier(USERS, action=lambda: between_rounds(rounds.pop(0)))
    rounds = list(range(TASKS_PER_USER))
    deadline = time.monotonic() + timeout

    def user(poller: Poller) -> None:
        with stack.client() as client:
            for _ in range(TASKS_PER_USER):
                poller.upload(client)
                poller.poll(client)
                barrier.wait(timeout=60)
            poller.poll_until_finished(client, deadline, settled)

    threads = [threading.Thread(target=user, args=(p,)) for p in pollers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 10)
    assert not any(t.is_alive() for t in threads), "a user thread did not finish"
    return pollers


def check(pollers: list[Poller]) -> None:
    problems = [p for poller in pollers for p in poller.problems]
    assert not problems, problems[:10]
    histories = [h for poller in pollers for h in poller.seen.values()]
    assert len(histories) == USERS * TASKS_PER_USER
    assert all(h[-1] == "completed" for h in histories), histories


def replica_task_reads(engine) -> int:  # type: ignore[no-untyped-def]
    """Scans of the tasks table run on the replica, by index or not: the status requests' task
    reads it was asked first (the lag checks touch no table). A backend publishes its counts
    within 10 s of going idle."""
    scans = "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'tasks'"
    with engine.connect() as connection:
        return connection.scalar(text(scans)) or 0


@pytest.fixture
def replicated_stack(pg_database, postgres_replica, redis_server, tmp_path) -> Iterator[tuple]:
    replica_url = postgres_replica.wait_for_database(pg_database.rsplit("/", 1)[1])
    env = server_env(pg_database, fresh_redis_db(redis_server), tmp_path / "data")
    env.update(
        UNLIMITED,
        IMGPROC_DATABASE_REPLICA_URL=replica_url,
        # Kept in use while paused: only the answer checks stand between it and the clients.
        IMGPROC_DATABASE_REPLICA_MAX_LAG_SECONDS="3600",
        IMGPROC_DATABASE_REPLICA_CHECK_SECONDS="0.2",
        IMGPROC_WORKER_CONCURRENCY="2",
        IMGPROC_LOG_LEVEL="WARNING",
    )
    engine = create_engine(replica_url, isolation_level="AUTOCOMMIT")
    with running_stack(env, tmp_path / "logs", workers=1) as stack:
        yield stack, engine, postgres_replica
    engine.dispose()


def test_polling_users_see_no_404_and_no_status_going_back_with_the_replica_paused_midway(replicated_stack):
    stack, replica, _ = replicated_stack
    before = replica_task_reads(replica)

    settled = threading.Event()

    def resume() -> None:
        with replica.connect() as connection:
            connection.execute(text("SELECT pg_wal_replay_resume()"))
        time.sleep(1)  # polls of the caught-up replica
        settled.set()

    def between_rounds(n: int) -> None:
        # Rounds 1-2 stream. The replica then stops replaying for PAUSE seconds while the rest
        # is uploaded, processed and polled: it holds pending rows that the primary has
        # finished, and lacks the new tasks.
        if n == 1:
            with replica.connect() as connection:
                connection.execute(text("SELECT pg_wal_replay_pause()"))
            threading.Timer(PAUSE, resume).start()

    started = time.monotonic()
    pollers = run_users(stack, between_rounds=between_rounds, settled=settled)
    seconds = time.monotonic() - started
    check(pollers)
    requests = sum(p.requests for p in pollers)
    # Each status request reads its task on the replica first while it is in use (the whole run:
    # the lag bound is an hour), so about one scan per request; a replica left unused has none.
    wanted = requests // 2
    reads = wait_until(
        lambda: (n := replica_task_reads(replica) - before) >= wanted and n,
        timeout=20,
        interval=1,
        what=f"{wanted} task reads on the replica for {requests} status requests",
    )
    print(
        f"\n{USERS} users x {TASKS_PER_USER} tasks, replica paused {PAUSE} s from round 3: {requests} status"
        f" requests in {seconds:.1f} s, 0 problems; {reads} task reads on the replica"
    )


def test_polling_users_keep_being_answered_with_the_replica_stopped(replicated_stack):
    stack, replica, server = replicated_stack

    settled = threading.Event()

    def between_rounds(n: int) -> None:
        if n == 1:
            replica.dispose()
            server.stop_immediately()
            settled.set()

    started = time.monotonic()
    pollers = run_users(stack, between_rounds=between_rounds, settled=settled)
    check(pollers)
    requests = sum(p.requests for p in pollers)
    print(f"\nreplica stopped after round 2: {requests} status requests in {time.monotonic() - started:.1f} s, all 200")
    assert httpx.get(stack.url + "/readyz").status_code == 200
