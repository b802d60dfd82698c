"""The whole loop with real workers: burst -> operator scales up -> real Celery workers drain the
queue -> operator scales down (to zero) -> every task ran exactly once.

A kubelet stand-in (tests/support/autoscaler/harness.py) keeps the number of local ``celery worker``
processes equal to the worker Deployment's spec.replicas, sending SIGTERM (warm shutdown) on
scale-down like the kubelet does to a pod. The tasks are real Celery tasks (Pillow resize + a
short sleep) from tests/support/autoscaler/loop_app.py, with acks_late / prefetch 1 /
reject_on_worker_lost like the real worker. Bounded: about a minute, 150 s at most.

Why the stand-in and not pods: this test's claim is the operator's loop (queue -> decision ->
Deployment -> back to zero, each task once), which does not depend on what runs the replicas;
the stand-in makes it a one-minute test on an API server alone. What depends on pods is proven
on the real cluster: the operator in its pod scaling real worker pods and their return to the
minimum (tests/cluster/test_chart.py), its replacement mid scale-up and workers deleted with
and without a grace period (tests/cluster/test_faults.py), and the timeline at minimum 1 and 0
(bench/bench_cluster.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.autoscaler.harness import KubeletStandIn, Timeline, publish_burst, queue_sampler
from tests.support.autoscaler.k8s_env import Autoscaled
from tests.support.waiting import true_within

pytestmark = pytest.mark.timeout(240)

BURST = 24
POLL = 2
MAX = 4
TASK_SECONDS = 1.5
DOWN_WINDOW = 6  # well above TASK_SECONDS: the last tasks are done before anyone is removed


def test_burst_scales_up_drains_and_scales_to_zero(autoscaled: Callable[..., Autoscaled], tmp_path: Path) -> None:
    env = autoscaled(poll=POLL, min=0, max=MAX, up_step=MAX, down_window=DOWN_WINDOW, down_step=1, cooldown=4)
    env.eventually(lambda: env.replicas() == 0, 15, "idle start: scale to zero")
    timeline = Timeline()
    kubelet = KubeletStandIn(env.replicas, env.broker, tmp_path / "loop", timeline, task_seconds=TASK_SECONDS)
    stop = threading.Event()
    kubelet.start()
    queue_sampler(env.broker, timeline, stop)
    try:
        burst_at = time.monotonic()
        ids = publish_burst(env.broker, BURST)
        timeline.add(f"burst: {BURST} tasks published")
        results = tmp_path / "loop" / "results"
        assert true_within(lambda: len(list(results.iterdir())) == BURST, 90), "queue not drained"
        drained_at = time.monotonic()
        timeline.add("all results written")
        assert true_within(lambda: env.replicas() == 0 and not kubelet.workers and not kubelet.stopping, 60), (
            "did not scale back to zero"
        )
        timeline.add("scaled to zero, every worker exited")
    finally:
        stop.set()
        kubelet.stop()
        print(f"\n--- timeline (t=0: harness start)\n{timeline.render()}")

    scale_ups = [(t - burst_at, n) for t, n in kubelet.replicas_seen if t >= burst_at and n > 0]
    first_up = scale_ups[0][0]
    peak = max(n for _, n in kubelet.replicas_seen)
    print(
        f"first scale-up {first_up:.1f}s after the burst, peak {peak} replicas, drained after "
        f"{drained_at - burst_at:.1f}s, workers removed {kubelet.removed} (busy: {kubelet.busy_removed})"
    )
    assert first_up <= 2 * POLL + 1.0
    assert peak == MAX

    executions = [line.split() for line in (tmp_path / "loop" / "executions.log").read_text().splitlines()]
    executed = [task_id for task_id, *_ in executions]
    assert sorted(executed) == sorted(ids), "a task was lost or ran twice"
    assert {p.stem for p in results.iterdir()} == set(ids)
    assert kubelet.busy_removed == 0, "a worker was stopped while running a task"
    assert env.status()["desiredReplicas"] == 0 and env.condition("Active") == "False"
