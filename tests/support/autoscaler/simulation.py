"""Discrete-time simulation of a burst through a scaling policy (bench tooling, not production).

Both policies go through the same ``desired_replicas``; they differ only in their ``Policy`` and
in what they observe: ours sees waiting + in-flight, the KEDA model sees waiting only (its
Redis-lists scaler runs LLEN; running tasks with acks_late sit in the ``unacked`` hash).

Model: N tasks arrive at t = 0. A pod is ready ``startup`` seconds after it is created and runs
``concurrency`` tasks at a time (acks_late + prefetch 1: a pod holds only what it runs). Each
task takes ``service`` seconds. Polls happen at ``phase + k * pollingInterval``. Scale-down
removes the youngest pods (ReplicaSet preference); a removed pod that is running tasks counts as
a *busy worker removed* (with a long grace period the task still finishes, but the pod is gone
from capacity and the HPA/KEDA behaviour is exactly what keda#6719 complains about).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autoscaler.scaling import Behavior, Observation, Policy, ScalerState, desired_replicas


def keda_default_policy(tasks_per_replica: int, max_replicas: int) -> Policy:
    """KEDA ScaledObject defaults: pollingInterval 30 s, cooldownPeriod 300 s, min 0, plus the HPA's
    default 300 s scale-down stabilisation and immediate scale-up (its per-15 s rate limits,
    max(4 pods, 100 %), do not bind for this burst size and are left out)."""
    return Policy(
        tasks_per_replica=tasks_per_replica,
        min_replicas=0,
        max_replicas=max_replicas,
        activation_threshold=0,
        polling_interval=30,
        cooldown_period=300,
        scale_up=Behavior(0),
        scale_down=Behavior(300),
    )


@dataclass
class Pod:
    created: float
    ready_at: float
    running: list[float] = field(default_factory=list)  # end times
    terminating: bool = False


@dataclass
class SimResult:
    name: str
    first_scale_up: float | None
    max_replicas: int
    at_max: float | None
    drained: float | None
    first_scale_down: float | None
    back_to_min: float | None
    busy_removed: int
    pod_seconds: float
    mean_latency: float
    p95_latency: float
    decisions: list[tuple[float, int, int, int]]  # (t, waiting, in_flight, replicas)


def simulate(
    name: str,
    policy: Policy,
    *,
    burst: int,
    service: float,
    concurrency: int,
    startup: float,
    waiting_only: bool,
    initial: int = 0,
    horizon: float = 1800.0,
    dt: float = 0.05,
    phase: float = 0.5,
) -> SimResult:
    t, queue = 0.0, burst
    pods = [Pod(-startup, 0.0) for _ in range(initial)]
    replicas, state = initial, ScalerState()
    next_poll = phase * policy.polling_interval
    latencies: list[float] = []
    first_up = at_max = drained = first_down = back = None
    peak, busy_removed, pod_seconds = initial, 0, 0.0
    decisions: list[tuple[float, int, int, int]] = []
    while t <= horizon:
        for pod in pods:  # finish tasks
            done = [end for end in pod.running if end <= t]
            latencies.extend(done)
            pod.running = [end for end in pod.running if end > t]
        pods = [p for p in pods if not (p.terminating and not p.running)]
        for pod in pods:  # start tasks
            while not pod.terminating and pod.ready_at <= t and queue and len(pod.running) < concurrency:
                pod.running.append(t + service)
                queue -= 1
        in_flight = sum(len(p.running) for p in pods)
        if drained is None and queue == 0 and in_flight == 0 and len(latencies) == burst:
            drained = t
        if t >= next_poll - 1e-9:
            seen = Observation(queue, 0 if waiting_only else in_flight)
            decision = desired_replicas(seen, policy, replicas, t, state)
            state = decision.state
            decisions.append((round(t, 2), queue, in_flight, decision.replicas))
            if decision.replicas > replicas:
                first_up = t if first_up is None else first_up
                pods += [Pod(t, t + startup) for _ in range(decision.replicas - replicas)]
            elif decision.replicas < replicas:
                first_down = t if first_down is None else first_down
                live = [p for p in pods if not p.terminating]
                for pod in sorted(live, key=lambda p: p.created)[decision.replicas :]:
                    busy_removed += bool(pod.running)
                    pod.terminating = True
            replicas = decision.replicas
            if replicas > peak:
                peak, at_max = replicas, t
            if drained is not None and back is None and replicas == policy.min_replicas and first_up:
                back = t
            next_poll += policy.polling_interval
        pod_seconds += dt * sum(1 for p in pods)
        if back is not None:
            break
        t = round(t + dt, 6)
    latencies.sort()
    mean = sum(latencies) / len(latencies) if latencies else math.nan
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else math.nan
    return SimResult(
        name, first_up, peak, at_max, drained, first_down, back, busy_removed, pod_seconds, mean, p95, decisions
    )
