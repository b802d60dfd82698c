"""Autoscaler.poll's edges that the test bed cannot provoke from outside."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kopf._core.engines import posting

from autoscaler.reconcile import Autoscaler

BODY = {
    "apiVersion": "autoscaling.imgproc.dev/v1alpha1",
    "kind": "WorkerAutoscaler",
    "metadata": {"name": "worker", "namespace": "default", "uid": "0000", "generation": 3},
    "spec": {"pollingInterval": 7},
}


class RecordingKube:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def test_an_unforeseen_poll_failure_shows_in_the_status_and_an_event_not_only_the_log() -> None:
    async def scenario() -> tuple[float, list[dict[str, Any]], list[Any]]:
        events: asyncio.Queue = asyncio.Queue()
        # What kopf sets up for its event poster when it runs the daemons.
        posting.settings_var.set(kopf.OperatorSettings())
        posting.event_queue_var.set(events)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        kube = RecordingKube()
        interval = await Autoscaler("default", "worker", kube).poll_failed(BODY, RuntimeError("boom"))
        return interval, kube.statuses, [events.get_nowait() for _ in range(events.qsize())]

    interval, statuses, events = asyncio.run(scenario())
    assert interval == 7  # the object's own polling interval, not a hard-coded retry
    ready = next(c for c in statuses[-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PollFailed")
    assert "RuntimeError: boom" in ready["message"]
    assert [(event.type, event.reason) for event in events] == [("Warning", "PollFailed")]
