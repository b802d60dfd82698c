"""The scaling decision: pure functions and values, no I/O, no kopf, no clocks.

``desired_replicas(observation, policy, current, now, state)`` is called once per polling
interval for one WorkerAutoscaler. It returns the absolute replica count for the worker
Deployment plus the state to hand back on the next call. The rules, in order:

1. **Pause.** The ``paused-replicas`` annotation sets that count; ``paused`` alone keeps the
   current one. Both win over everything below (KEDA semantics).
2. **Redis unreadable.** Keep the current count until ``fallback.failureThreshold``
   consecutive failures, then aim for ``fallback.replicas``. The first good read recovers.
   Either way the aim goes through the windows and steps below, and the pods busy at the
   last good read are presumed busy still (KEDA's fallback goes through the HPA's behaviour
   too): an outage neither flaps the count nor removes busy workers in one go, and a
   recovery after a long outage still waits out the scale-down window.
3. **Load.** ``load = waiting + in_flight``; the raw recommendation is
   ``ceil(load / tasksPerReplica)`` clamped to ``[max(min, 1), max]`` (the 1..N phase).
4. **Stabilisation, HPA style.** Scale-up goes to the *smallest* recommendation within the
   scale-up window (default 0 s: the newest one); scale-down goes to the *largest*
   recommendation within the scale-down window. Each move is at most ``maxStep``.
5. **Activation, KEDA style** (only when ``minReplicaCount == 0``): 0 -> 1 only when
   ``load > activationThreshold``; N -> 0 only once the load has stayed at or below the
   threshold for ``cooldownPeriod`` *and* the scale-down window would allow 1.
6. **Busy workers.** Never below ``ceil(in_flight / tasksPerReplica)``: those pods are
   running tasks (KEDA counts waiting messages only and removes them; we do not).
7. **Bounds.** ``[minReplicaCount, maxReplicaCount]`` win over steps and windows; the one
   thing that beats the busy-worker floor is a ``maxReplicaCount`` below it, because the
   user asked for that explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

PAUSED_ANNOTATION = "autoscaling.imgproc.dev/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.imgproc.dev/paused-replicas"

# Defaults, also written into the CRD schema (charts/imgproc/crds/workerautoscalers.yaml).
DEFAULT_TASKS_PER_REPLICA = 2
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 10
DEFAULT_POLLING_INTERVAL = 5.0
DEFAULT_COOLDOWN_PERIOD = 60.0
DEFAULT_SCALE_UP_WINDOW = 0.0
DEFAULT_SCALE_DOWN_WINDOW = 60.0
DEFAULT_FAILURE_THRESHOLD = 3


class PolicyError(ValueError):
    """The spec or the annotations describe an impossible policy; ``problems`` lists why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Behavior:
    """One direction of scaling: how long to look back, and how far to move per interval."""

    stabilization_window: float = 0.0
    max_step: int | None = None  # None: unlimited


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    replicas: int = 1


@dataclass(frozen=True)
class Policy:
    tasks_per_replica: int = DEFAULT_TASKS_PER_REPLICA
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    activation_threshold: int = 0
    polling_interval: float = DEFAULT_POLLING_INTERVAL
    cooldown_period: float = DEFAULT_COOLDOWN_PERIOD
    scale_up: Behavior = field(default_factory=lambda: Behavior(DEFAULT_SCALE_UP_WINDOW))
    scale_down: Behavior = field(default_factory=lambda: Behavior(DEFAULT_SCALE_DOWN_WINDOW))
    fallback: Fallback | None = None
    paused: bool = False
    paused_replicas: int | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise PolicyError(problems)

    def problems(self) -> list[str]:
        found: list[str] = []
        if self.tasks_per_replica < 1:
            found.append(f"tasksPerReplica must be >= 1 (got {self.tasks_per_replica})")
        if self.min_replicas < 0:
            found.append(f"minReplicaCount must be >= 0 (got {self.min_replicas})")
        if self.max_replicas < 1:
            found.append(f"maxReplicaCount must be >= 1 (got {self.max_replicas})")
        if self.min_replicas > self.max_replicas:
            found.append(f"minReplicaCount ({self.min_replicas}) must not exceed maxReplicaCount ({self.max_replicas})")
        if self.activation_threshold < 0:
            found.append(f"activationThreshold must be >= 0 (got {self.activation_threshold})")
        if self.polling_interval <= 0:
            found.append(f"pollingInterval must be > 0 (got {self.polling_interval})")
        if self.cooldown_period < 0:
            found.append(f"cooldownPeriod must be >= 0 (got {self.cooldown_period})")
        for name, behavior in (("scaleUp", self.scale_up), ("scaleDown", self.scale_down)):
            if behavior.stabilization_window < 0:
                found.append(f"{name}.stabilizationWindowSeconds must be >= 0")
            if behavior.max_step is not None and behavior.max_step < 1:
                found.append(f"{name}.maxStep must be >= 1 (got {behavior.max_step})")
        if self.fallback is not None:
            if self.fallback.failure_threshold < 1:
                found.append(f"fallback.failureThreshold must be >= 1 (got {self.fallback.failure_threshold})")
            if not self.min_replicas <= self.fallback.replicas <= self.max_replicas:
                found.append(
                    f"fallback.replicas ({self.fallback.replicas}) must lie within "
                    f"[minReplicaCount, maxReplicaCount] = [{self.min_replicas}, {self.max_replicas}]"
                )
        if self.paused_replicas is not None and self.paused_replicas < 0:
            found.append(f"{PAUSED_REPLICAS_ANNOTATION} must be >= 0 (got {self.paused_replicas})")
        return found

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> Policy:
        """Parse a WorkerAutoscaler ``spec`` (camelCase, as in the CRD) and its annotations.

        Missing fields take the CRD defaults, so a spec that bypassed the API server's
        defaulting (tests, old objects) means the same thing. Raises ``PolicyError``.
        """
        problems: list[str] = []

        def integer(source: Mapping[str, Any], key: str, default: int | None, where: str = "") -> int | None:
            value = source.get(key, default)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                problems.append(f"{where}{key} must be an integer (got {value!r})")
                return default
            return int(value)

        def number(source: Mapping[str, Any], key: str, default: float, where: str = "") -> float:
            value = source.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{where}{key} must be a number (got {value!r})")
                return default
            return float(value)

        def section(key: str) -> Mapping[str, Any]:
            value = spec.get(key) or {}
            if not isinstance(value, Mapping):
                problems.append(f"{key} must be an object")
                return {}
            return value

        up, down, fallback_spec = section("scaleUp"), section("scaleDown"), section("fallback")
        fallback = None
        if fallback_spec:
            replicas = integer(fallback_spec, "replicas", None, "fallback.")
            if replicas is None:
                problems.append("fallback.replicas is required when fallback is set")
            else:
                threshold = integer(fallback_spec, "failureThreshold", DEFAULT_FAILURE_THRESHOLD, "fallback.")
                fallback = Fallback(failure_threshold=threshold or 0, replicas=replicas)

        annotations = annotations or {}
        paused_replicas = None
        raw = annotations.get(PAUSED_REPLICAS_ANNOTATION)
        if raw is not None:
            try:
                paused_replicas = int(str(raw).strip())
            except ValueError:
                problems.append(f"{PAUSED_REPLICAS_ANNOTATION} must be an integer (got {raw!r})")

        values = dict(
            tasks_per_replica=integer(spec, "tasksPerReplica", DEFAULT_TASKS_PER_REPLICA),
            min_replicas=integer(spec, "minReplicaCount", DEFAULT_MIN_REPLICAS),
            max_replicas=integer(spec, "maxReplicaCount", DEFAULT_MAX_REPLICAS),
            activation_threshold=integer(spec, "activationThreshold", 0),
            polling_interval=number(spec, "pollingInterval", DEFAULT_POLLING_INTERVAL),
            cooldown_period=number(spec, "cooldownPeriod", DEFAULT_COOLDOWN_PERIOD),
            scale_up=Behavior(
                number(up, "stabilizationWindowSeconds", DEFAULT_SCALE_UP_WINDOW, "scaleUp."),
                integer(up, "maxStep", None, "scaleUp."),
            ),
            scale_down=Behavior(
                number(down, "stabilizationWindowSeconds", DEFAULT_SCALE_DOWN_WINDOW, "scaleDown."),
                integer(down, "maxStep", None, "scaleDown."),
            ),
            fallback=fallback,
            paused=str(annotations.get(PAUSED_ANNOTATION, "")).strip().lower() == "true",
            paused_replicas=paused_replicas,
        )
        if problems:
            raise PolicyError(problems)
        return cls(**values)  # type: ignore[arg-type]  # __post_init__ checks the ranges


# --------------------------------------------------------------------------- inputs / outputs


@dataclass(frozen=True)
class Observation:
    """What Redis said this interval. ``None`` counts mean the read failed."""

    waiting: int | None
    in_flight: int | None
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> Observation:
        return cls(None, None, error)

    @property
    def ok(self) -> bool:
        return self.waiting is not None and self.in_flight is not None

    @property
    def load(self) -> int | None:
        return None if not self.ok else self.waiting + self.in_flight  # type: ignore[operator]


@dataclass(frozen=True)
class ScalerState:
    """What one decision hands to the next (kept in kopf's memo; the times also go to status).

    ``recommendations`` are ``(time, replicas)`` pairs in the 1..N phase, newest last, pruned to
    the longest stabilisation window. ``last_active`` is when the load last exceeded the
    activation threshold (the start of the cooldown).
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    last_active: float | None = None
    last_scale: float | None = None
    consecutive_failures: int = 0
    busy: int = 0  # pods running tasks at the last good read; presumed busy while Redis is unreadable
    # (time, replicas) that only scale-down must respect, for one scale-down window.
    scale_down_floor: tuple[float, int] | None = None

    @classmethod
    def restored(
        cls,
        *,
        now: float,
        current: int,
        last_active: float | None = None,
        last_scale: float | None = None,
        consecutive_failures: int = 0,
    ) -> ScalerState:
        """State after an operator restart: the in-memory recommendations are gone, so the
        current count holds scale-down for a full window (never faster than before the
        restart); scale-up is not held back by it."""
        return cls((), last_active, last_scale, consecutive_failures, scale_down_floor=(now, current))


@dataclass(frozen=True)
class Decision:
    replicas: int
    current: int
    reason: str
    message: str
    state: ScalerState
    ready: bool  # the observation succeeded
    active: bool | None  # load > activationThreshold; None when unknown (Redis failed)
    fallback: bool
    paused: bool
    recommendation: int | None = None  # ceil(load / tasksPerReplica) within [min, max], for status

    @property
    def changed(self) -> bool:
        return self.replicas != self.current


# --------------------------------------------------------------------------- the function


def desired_replicas(
    observation: Observation,
    policy: Policy,
    current: int,
    now: float,
    state: ScalerState | None = None,
) -> Decision:
    """Absolute replica count for the worker Deployment. See the module docstring."""
    state = state or ScalerState()
    current = max(int(current), 0)
    failures = 0 if observation.ok else state.consecutive_failures + 1
    active = None if observation.load is None else observation.load > policy.activation_threshold
    last_active = state.last_active
    if active or (last_active is None and observation.ok):
        last_active = now  # unknown history counts as "just active": the cooldown starts now
    state = replace(state, consecutive_failures=failures, last_active=last_active)

    def decide(
        replicas: int,
        reason: str,
        message: str,
        *,
        fallback: bool = False,
        paused: bool = False,
        recommendation: int | None = None,
        new_state: ScalerState = state,
    ) -> Decision:
        if replicas != current:
            new_state = replace(new_state, last_scale=now)
        return Decision(
            replicas, current, reason, message, new_state, observation.ok, active, fallback, paused, recommendation
        )

    if policy.paused_replicas is not None:
        return decide(
            policy.paused_replicas,
            "PausedReplicas",
            f"paused at {policy.paused_replicas} replicas by annotation",
            paused=True,
        )
    if policy.paused:
        return decide(current, "Paused", f"paused by annotation; keeping {current} replicas", paused=True)

    if not observation.ok:
        fb = policy.fallback
        fallback = fb if fb is not None and failures >= fb.failure_threshold else None
        aim = fallback.replicas if fallback else _clamp(current, policy.min_replicas, policy.max_replicas)
        target, _, state = _stabilised(policy, state, now, current, aim)
        target = _clamp(max(target, min(state.busy, policy.max_replicas)), policy.min_replicas, policy.max_replicas)
        if fallback:
            toward = "" if target == fallback.replicas else f"; {target} for now (windows, steps, busy workers)"
            return decide(
                target,
                "Fallback",
                f"Redis unreadable {failures} times in a row ({observation.error}); "
                f"fallback to {fallback.replicas} replicas{toward}",
                fallback=True,
                new_state=state,
            )
        limit = f"{fb.failure_threshold}" if fb else "no fallback configured"
        return decide(
            target,
            "RedisUnavailable",
            f"Redis unreadable ({observation.error}); keeping {target} replicas "
            f"(failure {failures}, threshold {limit})",
            new_state=state,
        )

    waiting, in_flight = observation.waiting or 0, observation.in_flight or 0
    load = waiting + in_flight
    per = policy.tasks_per_replica
    busy = math.ceil(in_flight / per)
    lower = max(policy.min_replicas, 1)
    recommendation = _clamp(math.ceil(load / per), lower, policy.max_replicas)
    target, reason, state = _stabilised(policy, replace(state, busy=busy), now, current, recommendation)

    if policy.min_replicas == 0 and not active:
        idle_for = now - (last_active if last_active is not None else now)
        step_ok = policy.scale_down.max_step is None or current <= policy.scale_down.max_step
        if current == 0:
            target, reason = 0, "Idle"  # activation: 0 -> 1 needs load > activationThreshold
        elif target <= 1 and idle_for >= policy.cooldown_period and step_ok:
            target, reason = 0, "ScaleToZero"
        elif target == current == 1:
            reason = "HoldCooldown"

    if target < min(busy, policy.max_replicas):
        target, reason = min(busy, policy.max_replicas), "BusyWorkers"
    target = _clamp(target, policy.min_replicas, policy.max_replicas)
    if target == current and reason in ("ScaleUp", "ScaleDown", "ScaleToZero"):
        reason = "Steady"
    elif target > current and reason not in ("ScaleUp", "BusyWorkers"):
        reason = "ScaleUp"  # e.g. raised to minReplicaCount
    elif target < current and reason not in ("ScaleDown", "ScaleToZero", "BusyWorkers"):
        reason = "ScaleDown"  # e.g. lowered to maxReplicaCount

    raw = _clamp(math.ceil(load / per), policy.min_replicas, policy.max_replicas)
    message = (
        f"load {load} (waiting {waiting} + in-flight {in_flight}) / {per} per replica "
        f"-> {raw}; replicas {current} -> {target} ({reason})"
    )
    return decide(target, reason, message, recommendation=raw, new_state=state)


def _stabilised(
    policy: Policy, state: ScalerState, now: float, current: int, recommendation: int
) -> tuple[int, str, ScalerState]:
    """HPA-style windows and steps: up to the smallest recommendation of the scale-up window,
    down to the largest of the scale-down window (and the restart floor), at most maxStep."""
    horizon = max(policy.scale_up.stabilization_window, policy.scale_down.stabilization_window)
    history = tuple((t, r) for t, r in state.recommendations if now - t <= horizon and t <= now)
    history += ((now, recommendation),)
    floor = state.scale_down_floor
    if floor is not None and now - floor[0] > policy.scale_down.stabilization_window:
        floor = None
    state = replace(state, recommendations=history, scale_down_floor=floor)

    up_to = min(r for t, r in history if now - t <= policy.scale_up.stabilization_window)
    down_to = max(
        [r for t, r in history if now - t <= policy.scale_down.stabilization_window]
        + ([floor[1]] if floor is not None else [])
    )
    if current < up_to:
        return _step(current, up_to, policy.scale_up.max_step), "ScaleUp", state
    if current > down_to:
        return _step(current, down_to, policy.scale_down.max_step), "ScaleDown", state
    return current, "HoldStabilization" if recommendation < current else "Steady", state


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def _step(current: int, goal: int, max_step: int | None) -> int:
    if max_step is None:
        return goal
    if goal > current:
        return min(goal, current + max_step)
    return max(goal, current - max_step)
