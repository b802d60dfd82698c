"""Prometheus metrics of the autoscaler (served by prometheus_client on the metrics port)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

LABELS = ("namespace", "name")

BACKLOG = Gauge("imgproc_autoscaler_backlog", "Waiting messages in the watched queue lists.", LABELS)
IN_FLIGHT = Gauge("imgproc_autoscaler_in_flight", "Unacknowledged (running) messages of the watched queues.", LABELS)
DESIRED = Gauge("imgproc_autoscaler_desired_replicas", "Replicas decided at the last poll.", LABELS)
CURRENT = Gauge("imgproc_autoscaler_current_replicas", "spec.replicas of the target at the last poll.", LABELS)
SCALE_EVENTS = Counter(
    "imgproc_autoscaler_scale_events", "Replica changes written to the target.", (*LABELS, "direction")
)
REDIS_ERRORS = Counter("imgproc_autoscaler_redis_errors", "Failed reads of the queue.", LABELS)
POLL_ERRORS = Counter(
    "imgproc_autoscaler_poll_errors",
    "Polls that stopped before deciding (invalid spec, missing target, API errors).",
    (*LABELS, "reason"),
)

_PER_OBJECT = (BACKLOG, IN_FLIGHT, DESIRED, CURRENT, REDIS_ERRORS)


def forget(namespace: str, name: str) -> None:
    """Drop the series of a deleted WorkerAutoscaler."""
    for metric in _PER_OBJECT:
        with contextlib.suppress(KeyError):
            metric.remove(namespace, name)
    for metric, extra in ((SCALE_EVENTS, ("up", "down")), (POLL_ERRORS, ())):
        for labels in list(metric._metrics):  # no public API lists the series
            if labels[:2] == (namespace, name) and (not extra or labels[2] in extra):
                metric.remove(*labels)
