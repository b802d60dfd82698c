"""Autoscaling on real pods: a burst of real uploads through the ingress of the local cluster
(scripts/cluster), the operator in its pod scaling the real worker Deployment, once with the
workers at minReplicaCount 1 and once at 0. Side by side: the same burst under KEDA's default
policy, SIMULATED (tests/support/autoscaler/simulation.py) with the per-task time and pod start-up time
measured in the run (KEDA itself is not run here).

Run: ``make bench-cluster`` or ``python -m bench.bench_cluster [--count 200] [--minimums 1 0]``
(root; about 4 minutes per minimum; every wait is bounded). It brings the cluster up if it is
not (and down again afterwards), installs one release per minimum with the chart's default
scaling policy, and prints a timeline and a table:

first scale-up, time to the maximum, queue drained, first scale-down, back to the minimum,
tasks lost, tasks duplicated (result files beyond one per completed task), results missing,
server errors, tasks run twice, worker pods removed (the ledger's counts are shown even when it
fails; the exit status is then 1). A worker pod removed while busy finishes its task in its warm shutdown:
the chart refuses to render a terminationGracePeriodSeconds that does not cover the task's hard
time limit, so "tasks run twice" is the figure that would show a busy pod killed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

from tests.fixtures.cluster import LiveCluster, Release, running_cluster  # noqa: E402
from tests.fixtures.ledger import tally  # noqa: E402
from tests.support.autoscaler.simulation import SimResult, keda_default_policy, simulate  # noqa: E402
from tests.support.cluster import Burst  # noqa: E402
from tests.support.images import photo  # noqa: E402

# The chart's default policy (charts/imgproc/values.yaml, autoscaler.*), which the table's
# simulated "ours" column replays; the release below only sets min/max.
POLL, UP_STEP, DOWN_WINDOW, DOWN_STEP, COOLDOWN = 5, 4, 60, 1, 60
MAX_REPLICAS = 3
HARD_LIMIT = 420.0  # seconds per minimum


@dataclass
class Sample:
    at: float
    replicas: int
    ready: int
    backlog: int
    in_flight: int


@dataclass
class Run:
    minimum: int
    samples: list[Sample] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what broke the ledger's rules

    def event(self, at: float, text: str) -> None:
        self.events.append((round(at, 1), text))


def sample(cluster: LiveCluster, release: Release, worker: str, since: float) -> Sample:
    deployment = cluster.get("deployment", worker, "-n", release.namespace)
    status = cluster.get("workerautoscaler", worker, "-n", release.namespace).get("status", {})
    return Sample(
        time.monotonic() - since,
        deployment["spec"]["replicas"],
        deployment["status"].get("readyReplicas", 0),
        status.get("backlog", 0),
        status.get("inFlight", 0),
    )


def measure(cluster: LiveCluster, minimum: int, count: int, images: list[bytes]) -> Run:
    run = Run(minimum)
    release = cluster.install(
        cluster.new_namespace(f"bench-min{minimum}"),
        "--set",
        f"autoscaler.minReplicaCount={minimum}",
        "--set",
        f"autoscaler.maxReplicaCount={MAX_REPLICAS}",
    )
    worker = f"{release.name}-worker" if release.name == "imgproc" else f"{release.name}-imgproc-worker"
    deadline = time.monotonic() + HARD_LIMIT
    try:
        # Idle at the minimum first (a new Deployment starts at 1; with minimum 0 the operator
        # removes it after its cooldown).
        while sample(cluster, release, worker, 0).replicas != minimum and time.monotonic() < deadline:
            time.sleep(2)
        users = 8  # within the per-user rate limit (120 uploads/min) at 25 uploads each
        stop = threading.Event()
        started = time.monotonic()

        def sampler() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):  # one failed kubectl read is a gap, not an end
                    run.samples.append(sample(cluster, release, worker, started))
                time.sleep(0.5)

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        with Burst(release, images, users=users, count=-(-count // users), seconds=HARD_LIMIT / 2) as burst:
            pass
        run.event(time.monotonic() - started, f"burst sent: {len(burst.accepted)} uploads accepted")
        # Counted, not asserted: a loss or a duplicate is a row of the table and the exit status.
        counts, run.problems = tally(
            release,
            burst.owners(),
            burst.ids(),
            name=f"cluster autoscaling, min {minimum}",
            timeout=max(30.0, deadline - time.monotonic()),
            server_errors=len(burst.server_errors),
            refused=burst.refused.get(503, 0),
        )
        run.problems += [f"server error: {error}" for error in burst.server_errors[:5]]
        drained = time.monotonic() - started
        run.event(drained, "every task terminal")
        while time.monotonic() < deadline:
            last = run.samples[-1] if run.samples else None
            if last and last.at > drained and last.replicas == minimum and last.ready == minimum:
                break
            time.sleep(1)
        stop.set()
        thread.join(timeout=5)
        processing = [
            json.loads(status["metadata"])["processing_ms"] / 1000
            for user, task_id in burst.accepted[:40]
            if (status := user.get(f"/api/isReady/{task_id}").json())["status"] == "completed"
        ]
        burst.close()
        run.figures = figures(run, drained, counts, statistics.mean(processing) if processing else 1.0)
    finally:
        release.helm("uninstall", release.name, "--wait", check=False)
    return run


def figures(run: Run, drained: float, counts: dict, service: float) -> dict:
    samples, minimum = run.samples, run.minimum
    peak = max((s.replicas for s in samples), default=minimum)
    up = next((s.at for s in samples if s.replicas > minimum), None)
    at_max = next((s.at for s in samples if s.replicas == peak), None) if peak > minimum else None
    after_peak = [s for s in samples if at_max is not None and s.at > at_max]
    down = next((s.at for s in after_peak if s.replicas < peak), None)
    back = next((s.at for s in after_peak if s.replicas == minimum and s.ready == minimum), None)
    # Pod start-up: a replica asked for -> that many Ready.
    startups = []
    for i, s in enumerate(samples[1:], 1):
        if s.replicas > samples[i - 1].replicas:
            ready = next((t.at for t in samples[i:] if t.ready >= s.replicas), None)
            if ready is not None:
                startups.append(ready - s.at)
    removed = sum(max(0, a.replicas - b.replicas) for a, b in zip(samples, samples[1:], strict=False))
    return {
        "first_scale_up": up,
        "at_max": at_max,
        "max_replicas": peak,
        "drained": drained,
        "first_scale_down": down,
        "back_to_min": back,
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "missing_results": counts["missing_results"],
        "server_errors": counts["server_errors"],
        "run_twice": counts["redelivered"],
        "pods_removed": removed,
        "accepted": counts["accepted"],
        "service_seconds": service,
        "startup_seconds": statistics.median(startups) if startups else 5.0,
    }


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def report(runs: list[Run], count: int) -> None:
    for run in runs:
        print(
            f"\n--- timeline, minReplicaCount {run.minimum} (s from the first upload; replicas/ready, "
            "backlog/in flight)"
        )
        lines, last = list(run.events), None
        for s in run.samples:
            if (s.replicas, s.ready) != last:
                state = f"replicas {s.replicas} ready {s.ready}  backlog {s.backlog} in flight {s.in_flight}"
                lines.append((s.at, state))
                last = (s.replicas, s.ready)
        for at, text in sorted(lines):
            print(f"{at:7.1f}  {text}")
    print(
        f"\nburst: {count} uploads through the ingress (12 MP and 1080p photos, alternating), 8 users; "
        f"operator with the chart's defaults (poll {POLL} s, scale-up step {UP_STEP}, scale-down window "
        f"{DOWN_WINDOW} s step {DOWN_STEP}, cooldown {COOLDOWN} s), max {MAX_REPLICAS}"
    )
    print(
        "KEDA default (SIMULATED, not run): pollingInterval 30 s, waiting messages only, cooldown 300 s, "
        "HPA scale-down window 300 s\n"
    )
    header = f"{'':26}" + "".join(f"{f'min {r.minimum} ours':>14}{f'min {r.minimum} KEDA sim':>16}" for r in runs)
    print(header)
    rows = [
        ("first scale-up (s)", "first_scale_up"),
        ("at max replicas (s)", "at_max"),
        ("max replicas", "max_replicas"),
        ("queue drained (s)", "drained"),
        ("first scale-down (s)", "first_scale_down"),
        ("back to the minimum (s)", "back_to_min"),
        ("tasks lost", "lost"),
        ("tasks duplicated", "duplicated"),
        ("results missing", "missing_results"),
        ("server errors", "server_errors"),
        ("tasks run twice", "run_twice"),
        ("worker pods removed", "pods_removed"),
    ]
    sims = [keda_side(run) for run in runs]
    simulated_as = {"first_scale_up", "at_max", "max_replicas", "drained", "first_scale_down", "back_to_min"}
    for title, key in rows:
        line = f"{title:26}"
        for run, sim in zip(runs, sims, strict=True):
            simulated = getattr(sim, key) if key in simulated_as else None
            line += f"{_fmt(run.figures.get(key)):>14}{_fmt(simulated):>16}"
        print(line)
    for run in runs:
        f = run.figures
        print(
            f"min {run.minimum}: {f['accepted']} accepted; measured {f['service_seconds']:.2f} s/task in the "
            f"pipeline, worker pod start-up {f['startup_seconds']:.1f} s (the simulation's inputs)"
        )
    for run in runs:
        for problem in run.problems:
            print(f"min {run.minimum}: LEDGER FAILED: {problem}")
    met = all(
        r.figures["first_scale_up"] is not None
        and r.figures["first_scale_up"] <= 10
        and not r.problems
        and r.figures["run_twice"] == 0
        for r in runs
    )
    print(
        f"targets (first scale-up <= 10 s, 0 lost, 0 duplicated, no task cut by a scale-down): "
        f"{'MET' if met else 'NOT MET'}"
    )


def keda_side(run: Run) -> SimResult:
    """The same burst under KEDA's defaults, from the same minimum, with this run's measured
    per-task time and pod start-up time (2 tasks per worker pod, as the chart's default)."""
    f = run.figures
    policy = dataclasses.replace(keda_default_policy(2, MAX_REPLICAS), min_replicas=run.minimum)
    return simulate(
        "keda",
        policy,
        burst=f["accepted"],
        concurrency=2,
        startup=f["startup_seconds"],
        service=f["service_seconds"],
        waiting_only=True,
        initial=run.minimum,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="uploads in the burst")
    parser.add_argument("--minimums", type=int, nargs="+", default=[1, 0])
    args = parser.parse_args(argv)
    images = [photo(4000, 3000, quality=85), photo(1920, 1080, quality=85)]
    started = time.monotonic()
    with contextlib.contextmanager(running_cluster)() as cluster:
        runs = [measure(cluster, minimum, args.count, images) for minimum in args.minimums]
    report(runs, args.count)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    return 0 if not any(r.problems for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
