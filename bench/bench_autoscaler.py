"""Autoscaler bench: one burst of real Celery tasks through the real operator, next to the same
burst under a KEDA-default policy (simulated through the same decision function).

Run: ``python -m bench.bench_autoscaler`` (about 3 minutes; hard limit 5). It starts etcd +
kube-apiserver (scripts/k8s-tools), a password-protected redis-server, creates the chart's CRD,
RBAC, worker Deployment and WorkerAutoscaler, runs ``python -m autoscaler`` as the operator's
ServiceAccount, and a kubelet stand-in that keeps real ``celery worker`` processes equal to the
Deployment's spec.replicas (tests/support/autoscaler/harness.py). The same burst on real pods, through
the ingress, is bench/bench_cluster.py (`make bench-cluster`).

Measured, in seconds from the burst: first scale-up, maximum replicas, queue drained (every
task done), first scale-down, back to minReplicaCount (every worker exited); busy workers
removed (SIGTERMed while running a task). Then, with the measured per-task service time and
worker start-up time, a discrete-time simulation (tests/support/autoscaler/simulation.py) replays the
burst under our policy and under KEDA's defaults (pollingInterval 30 s, cooldownPeriod 300 s,
the HPA's 300 s scale-down window, waiting messages only), side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # when run as a script rather than with -m
    sys.path.insert(0, str(_REPO_ROOT))

from kubernetes import client  # noqa: E402

from autoscaler.scaling import Behavior, Policy  # noqa: E402
from tests.fixtures.kube import KubeTestBed, locate_tools  # noqa: E402
from tests.fixtures.redis import start_redis  # noqa: E402
from tests.support.autoscaler.harness import KubeletStandIn, Timeline, publish_burst, queue_sampler  # noqa: E402
from tests.support.autoscaler.k8s_env import WORKER, deploy, install_crd, require_password, undeploy  # noqa: E402
from tests.support.autoscaler.simulation import SimResult, keda_default_policy, simulate  # noqa: E402

HARD_LIMIT = 290.0  # seconds for the whole measured run


def measure(args: argparse.Namespace, work: Path) -> dict:
    deadline = time.monotonic() + HARD_LIMIT
    bin_dir = locate_tools()
    if bin_dir is None or not all((bin_dir / b).exists() for b in ("etcd", "kube-apiserver", "helm")):
        raise SystemExit("k8s tools missing: run scripts/k8s-tools first")
    kube = KubeTestBed(bin_dir=bin_dir, workdir=work / "kube").start()
    server = start_redis()
    require_password(server)
    env = kubelet = None
    stop = threading.Event()
    timeline = Timeline()
    try:
        install_crd(kube)
        env = deploy(
            kube,
            server,
            work,
            poll=args.poll,
            min=args.min,
            max=args.max,
            tasks_per_replica=args.concurrency,
            up_step=args.up_step,
            down_window=args.down_window,
            down_step=args.down_step,
            cooldown=args.cooldown,
        )
        # Start idle at minReplicaCount (the API server defaults a new Deployment to 1 replica, which
        # the operator would otherwise only remove after the cooldown).
        client.AppsV1Api(kube.api_client).patch_namespaced_deployment_scale(
            WORKER, env.namespace, {"spec": {"replicas": args.min}}
        )
        time.sleep(2 * args.poll)
        if env.replicas() != args.min:
            raise RuntimeError(f"did not stay at minReplicaCount={args.min}")
        results = work / "loop"
        kubelet = KubeletStandIn(
            env.replicas, env.broker, results, timeline, concurrency=args.concurrency, task_seconds=args.task_seconds
        ).start()
        queue_sampler(env.broker, timeline, stop)
        time.sleep(1.0)  # the minReplicaCount workers, if any, are up
        burst_at = time.monotonic()
        ids = publish_burst(env.broker, args.burst)
        timeline.add(f"burst: {args.burst} tasks published")
        drained = _wait(lambda: len(list((results / "results").iterdir())) == args.burst, deadline)
        drained_at = time.monotonic() if drained else None
        timeline.add("all results written" if drained else "NOT DRAINED (time limit)")
        back = _wait(
            lambda: env.replicas() == args.min and len(kubelet.workers) == args.min and not kubelet.stopping, deadline
        )
        back_at = time.monotonic() if back else None
        timeline.add(f"back to {args.min} replicas" if back else "NOT BACK TO MIN (time limit)")
    finally:
        stop.set()
        if kubelet is not None:
            kubelet.stop()
        if env is not None:
            undeploy(env)
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
        kube.stop()
    print(f"--- timeline (t=0: harness start)\n{timeline.render()}\n")

    before = [n for t, n in kubelet.replicas_seen if t < burst_at][-1:] or [args.min]
    seen = [(0.0, before[0])] + [(t - burst_at, n) for t, n in kubelet.replicas_seen if t >= burst_at]
    peak = max(n for _, n in seen)
    ups = [t for (t, n), (_, before) in zip(seen[1:], seen, strict=False) if n > before]
    downs = [t for (t, n), (_, before) in zip(seen[1:], seen, strict=False) if n < before]
    runs = [line.split() for line in (results / "executions.log").read_text().splitlines()]
    service = statistics.mean(float(end) - float(start) for _, _, start, end in runs)
    first_start: dict[str, float] = {}
    for _, node, start, _ in runs:
        first_start[node] = min(first_start.get(node, float("inf")), float(start))
    executed = sorted(task_id for task_id, *_ in runs)
    return {
        "first_scale_up": ups[0] if ups else None,
        "at_max": next((t for t, n in seen if n == peak), None),
        "max_replicas": peak,
        "drained": drained_at - burst_at if drained_at else None,
        "first_scale_down": downs[0] if downs else None,
        "back_to_min": back_at - burst_at if back_at else None,
        "busy_removed": kubelet.busy_removed,
        "workers_removed": kubelet.removed,
        "tasks_lost_or_duplicated": len(set(ids) ^ set(executed)) + (len(executed) - len(set(executed))),
        "service_seconds": service,
        "startup_seconds": _startup(kubelet, first_start),
    }


def _startup(kubelet: KubeletStandIn, first_start: dict[str, float]) -> float:
    """Median seconds from a worker process being spawned to its first task starting (an upper
    bound of the pod start-up time: it includes waiting for a message)."""
    spawned = kubelet.spawned_at
    delays = [first_start[node] - at for node, at in spawned.items() if node in first_start]
    return statistics.median(delays) if delays else 3.0


def _wait(condition, deadline: float, period: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period)
    return False


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def report(
    args: argparse.Namespace, real: dict, ours: SimResult, keda: SimResult, long_ours: SimResult, long_keda: SimResult
) -> None:
    rows = [
        ("first scale-up (s)", real["first_scale_up"], ours.first_scale_up, keda.first_scale_up),
        ("max replicas", real["max_replicas"], ours.max_replicas, keda.max_replicas),
        ("at max replicas (s)", real["at_max"], ours.at_max, keda.at_max),
        ("queue drained (s)", real["drained"], ours.drained, keda.drained),
        ("first scale-down (s)", real["first_scale_down"], ours.first_scale_down, keda.first_scale_down),
        (f"back to min={args.min} (s)", real["back_to_min"], ours.back_to_min, keda.back_to_min),
        ("busy workers removed", real["busy_removed"], ours.busy_removed, keda.busy_removed),
        ("pod-seconds used", None, ours.pod_seconds, keda.pod_seconds),
        ("mean task completion (s)", None, ours.mean_latency, keda.mean_latency),
        ("p95 task completion (s)", None, ours.p95_latency, keda.p95_latency),
    ]
    print(
        f"burst {args.burst} tasks, {args.concurrency} per worker, measured service "
        f"{real['service_seconds']:.2f}s/task, worker start-up {real['startup_seconds']:.1f}s"
    )
    print(
        f"ours: pollingInterval {args.poll}s, waiting+in-flight, scaleUp maxStep {args.up_step}, scaleDown "
        f"window {args.down_window}s maxStep {args.down_step}, cooldown {args.cooldown}s, "
        f"min {args.min} max {args.max}"
    )
    print("KEDA default: pollingInterval 30s, waiting only (LLEN), cooldown 300s, HPA scale-down window 300s\n")
    print(f"{'':28}{'ours (measured)':>17}{'ours (simulated)':>18}{'KEDA default (sim)':>20}")
    for name, measured, simulated, baseline in rows:
        print(f"{name:28}{_fmt(measured):>17}{_fmt(simulated):>18}{_fmt(baseline):>20}")
    print(
        f"\ntasks lost or duplicated (measured): {real['tasks_lost_or_duplicated']}; workers removed: "
        f"{real['workers_removed']}"
    )
    print(
        f"long tasks ({args.long_task_seconds:.0f}s each, same burst, simulated): busy workers removed - "
        f"ours {long_ours.busy_removed}, KEDA default {long_keda.busy_removed}"
    )
    target = 2 * args.poll
    ok = real["first_scale_up"] is not None and real["first_scale_up"] <= target and real["busy_removed"] == 0
    print(
        f"targets: first scale-up <= {target}s (2 polling intervals), no busy worker removed: "
        f"{'MET' if ok else 'NOT MET'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=48)
    parser.add_argument("--task-seconds", type=float, default=2.0, help="sleep in each task (plus Pillow)")
    parser.add_argument("--concurrency", type=int, default=2, help="per worker = tasksPerReplica")
    parser.add_argument("--poll", type=int, default=5, help="pollingInterval (chart default 5)")
    parser.add_argument("--min", type=int, default=0)
    parser.add_argument("--max", type=int, default=6)
    parser.add_argument("--up-step", type=int, default=4, help="scaleUp.maxStep (chart default 4)")
    parser.add_argument("--down-window", type=int, default=60, help="scaleDown window (chart default 60)")
    parser.add_argument("--down-step", type=int, default=1, help="scaleDown.maxStep (chart default 1)")
    parser.add_argument("--cooldown", type=int, default=60, help="cooldownPeriod (chart default 60)")
    parser.add_argument("--long-task-seconds", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-autoscaler-") as tmp:
        real = measure(args, Path(tmp))
    ours_policy = Policy(
        tasks_per_replica=args.concurrency,
        min_replicas=args.min,
        max_replicas=args.max,
        polling_interval=args.poll,
        cooldown_period=args.cooldown,
        scale_up=Behavior(0, args.up_step),
        scale_down=Behavior(args.down_window, args.down_step),
    )
    keda_policy = keda_default_policy(args.concurrency, args.max)
    common = dict(burst=args.burst, concurrency=args.concurrency, startup=real["startup_seconds"])
    ours = simulate("ours", ours_policy, service=real["service_seconds"], waiting_only=False, **common)
    keda = simulate("keda", keda_policy, service=real["service_seconds"], waiting_only=True, **common)
    long_ours = simulate(
        "ours", ours_policy, service=args.long_task_seconds, waiting_only=False, horizon=4 * 3600, dt=0.5, **common
    )
    long_keda = simulate(
        "keda", keda_policy, service=args.long_task_seconds, waiting_only=True, horizon=4 * 3600, dt=0.5, **common
    )
    report(args, real, ours, keda, long_ours, long_keda)
    print(f"\n(bench took {time.monotonic() - started:.0f}s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "measured": real,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "simulated": {
                        r.name + suffix: {k: v for k, v in vars(r).items() if k != "decisions"}
                        for r, suffix in ((ours, ""), (keda, ""), (long_ours, "-long"), (long_keda, "-long"))
                    },
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
