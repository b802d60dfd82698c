"""One polling interval of one WorkerAutoscaler: read -> decide -> write.

Glue between the edges (``queue_reader`` for Redis, ``kube`` for the API) and the pure decision
(``scaling``, ``status``). Blocking client calls run in a worker thread so the operator's
event loop stays free. Events are posted on replica changes and on *transitions* of the
problem state (first failure, fallback, recovery...), never on every poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from autoscaler import metrics
from autoscaler.kube import Kube, KubeError
from autoscaler.queue_reader import QueueReader, RedisSource, redacted
from autoscaler.scaling import (
    DEFAULT_POLLING_INTERVAL,
    Decision,
    Observation,
    Policy,
    PolicyError,
    ScalerState,
    desired_replicas,
)
from autoscaler.status import decision_status, error_status, restored_state

log = logging.getLogger(__name__)


@dataclass
class Autoscaler:
    """Everything one WorkerAutoscaler remembers between polls (kept in kopf's per-object memo).

    ``state`` feeds the stabilisation windows; it starts from the object's status after a
    restart (see ``status.restored_state``)."""

    namespace: str
    name: str
    kube: Kube
    logger: logging.Logger | logging.LoggerAdapter = field(default_factory=lambda: log)  # kopf's, per object
    state: ScalerState | None = None
    reader: QueueReader | None = None
    problem: str | None = None  # reason of the current problem; an event is posted when it changes
    paused: bool = False
    written: dict[str, Any] | None = None  # the last status we wrote

    async def poll(self, body: Mapping[str, Any]) -> float:
        """Run one interval; returns the seconds to wait before the next one."""
        now = time.time()
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        try:
            policy = Policy.from_spec(spec, meta.get("annotations") or {})
            source = RedisSource.from_spec(spec)
        except PolicyError as exc:
            await self._stop_short(body, "InvalidSpec", f"invalid spec: {exc}", generation, now)
            return DEFAULT_POLLING_INTERVAL
        target = str((spec.get("scaleTargetRef") or {}).get("name") or "")
        try:
            scale = await asyncio.to_thread(self.kube.read_scale, self.namespace, target)
        except KubeError as exc:
            await self._stop_short(body, exc.reason, str(exc), generation, now)
            return policy.polling_interval

        observation = await asyncio.to_thread(self._observe, source)
        if self.state is None:
            self.state = restored_state(body.get("status") or {}, now=now, current=scale.replicas)
        decision = desired_replicas(observation, policy, scale.replicas, now, self.state)
        if decision.changed:
            try:
                await asyncio.to_thread(self.kube.patch_scale, self.namespace, target, decision.replicas)
            except KubeError as exc:  # state not committed: the next poll decides again
                await self._stop_short(body, exc.reason, str(exc), generation, now)
                return policy.polling_interval
            self._scaled(body, decision, target)
        self.state = decision.state

        status = decision_status(
            decision,
            previous=self.written or body.get("status") or {},
            backlog=observation.waiting,
            in_flight=observation.in_flight,
            current=scale.replicas,
            generation=generation,
            now=now,
        )
        await self._write_status(status)
        self._report(body, decision, observation)
        return policy.polling_interval

    async def poll_failed(self, body: Mapping[str, Any], exc: Exception) -> float:
        """A poll that raised something unforeseen: say so in the status and an Event (not only
        in the log), and try again at the object's own polling interval."""
        meta = body.get("metadata") or {}
        try:
            interval = Policy.from_spec(body.get("spec") or {}, meta.get("annotations") or {}).polling_interval
        except PolicyError:
            interval = DEFAULT_POLLING_INTERVAL
        await self._stop_short(body, "PollFailed", f"{type(exc).__name__}: {exc}", meta.get("generation"), time.time())
        return interval

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    # ------------------------------------------------------------------ helpers

    def _observe(self, source: RedisSource) -> Observation:
        """Read the queue (blocking). The connection is cached; after a failure it is
        rebuilt, re-reading the password Secret, on the next poll."""
        if self.reader is not None and self.reader.source != source:
            self.close()
        if self.reader is None:
            password = None
            if source.secret_ref is not None:
                try:
                    password = self.kube.read_secret(self.namespace, source.secret_ref)
                except KubeError as exc:
                    return Observation.failed(f"{exc.reason}: {exc}")
            self.reader = QueueReader(source, password)
        observation = self.reader.observe()
        if not observation.ok:
            self.close()
            observation = Observation.failed(f"{redacted(source.url)}: {observation.error}")
        return observation

    def _scaled(self, body: Mapping[str, Any], decision: Decision, target: str) -> None:
        direction = "up" if decision.replicas > decision.current else "down"
        metrics.SCALE_EVENTS.labels(self.namespace, self.name, direction).inc()
        reason = "ScaledUp" if direction == "up" else "ScaledDown"
        message = f"deployment/{target}: {decision.current} -> {decision.replicas}: {decision.message}"
        self.logger.info(message)
        kopf.info(dict(body), reason=reason, message=message)

    def _report(self, body: Mapping[str, Any], decision: Decision, observation: Observation) -> None:
        labels = (self.namespace, self.name)
        if observation.ok:
            metrics.BACKLOG.labels(*labels).set(observation.waiting or 0)
            metrics.IN_FLIGHT.labels(*labels).set(observation.in_flight or 0)
        else:
            metrics.REDIS_ERRORS.labels(*labels).inc()
        metrics.DESIRED.labels(*labels).set(decision.replicas)
        metrics.CURRENT.labels(*labels).set(decision.current)
        problem = "FallbackActivated" if decision.fallback else None if decision.ready else "RedisUnavailable"
        self._transition(body, problem, decision.message)
        if decision.paused != self.paused:
            self.paused = decision.paused
            kopf.info(dict(body), reason="Paused" if decision.paused else "Resumed", message=decision.message)

    async def _stop_short(
        self, body: Mapping[str, Any], reason: str, message: str, generation: int | None, now: float
    ) -> None:
        metrics.POLL_ERRORS.labels(self.namespace, self.name, reason).inc()
        status = error_status(
            previous=self.written or body.get("status") or {},
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
        try:
            await self._write_status(status)
        except KubeError as exc:
            self.logger.warning(f"cannot write status: {exc}")
        self._transition(body, reason, message)

    def _transition(self, body: Mapping[str, Any], problem: str | None, message: str) -> None:
        if problem == self.problem:
            return
        before, self.problem = self.problem, problem
        if problem is None:
            self.logger.info(f"recovered from {before}")
            kopf.info(dict(body), reason="Recovered", message=f"{before} resolved: {message}")
        else:
            self.logger.warning(f"{problem}: {message}")
            kopf.warn(dict(body), reason=problem, message=message)

    async def _write_status(self, status: dict[str, Any]) -> None:
        if status == self.written:
            return
        await asyncio.to_thread(self.kube.patch_status, self.namespace, self.name, status)
        self.written = status
