"""desired_replicas(): a decision table, policy parsing, and properties checked with hypothesis."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autoscaler.scaling import (
    PAUSED_ANNOTATION,
    PAUSED_REPLICAS_ANNOTATION,
    Behavior,
    Fallback,
    Observation,
    Policy,
    PolicyError,
    ScalerState,
    desired_replicas,
)

NOW = 10_000.0


def policy(**overrides: Any) -> Policy:
    base: dict[str, Any] = dict(
        tasks_per_replica=2,
        min_replicas=0,
        max_replicas=10,
        cooldown_period=60,
        scale_up=Behavior(0),
        scale_down=Behavior(60),
    )
    return Policy(**(base | overrides))


def state(
    *, history: tuple[tuple[float, int], ...] = (), idle_for: float | None = None, failures: int = 0
) -> ScalerState:
    """history: (seconds ago, replicas); idle_for: seconds since the load was last active."""
    return ScalerState(
        tuple((NOW - ago, r) for ago, r in history), None if idle_for is None else NOW - idle_for, None, failures
    )


@dataclass
class Case:
    id: str
    observation: Observation
    current: int
    expected: int
    reason: str
    policy: Policy = field(default_factory=policy)
    state: ScalerState = field(default_factory=lambda: state(idle_for=0))


CASES = [
    Case("empty queue at zero stays at zero", Observation(0, 0), 0, 0, "Idle"),
    Case("one waiting message activates 0 -> 1", Observation(1, 0), 0, 1, "ScaleUp"),
    Case("7 messages at 2 per replica want 4", Observation(7, 0), 1, 4, "ScaleUp"),
    Case("in-flight messages count as load", Observation(3, 3), 1, 3, "ScaleUp"),
    Case("capped at maxReplicaCount", Observation(500, 0), 2, 10, "ScaleUp"),
    Case(
        "at or below activation threshold stays at zero",
        Observation(3, 0),
        0,
        0,
        "Idle",
        policy(activation_threshold=3),
    ),
    Case(
        "above activation threshold scales past one", Observation(6, 0), 0, 3, "ScaleUp", policy(activation_threshold=5)
    ),
    Case(
        "activation ignored when min is 1",
        Observation(3, 0),
        1,
        2,
        "ScaleUp",
        policy(min_replicas=1, activation_threshold=5),
    ),
    Case("raised to minReplicaCount with no load", Observation(0, 0), 0, 2, "ScaleUp", policy(min_replicas=2)),
    Case("scale-up limited by maxStep", Observation(20, 0), 1, 3, "ScaleUp", policy(scale_up=Behavior(0, max_step=2))),
    Case(
        "scale-up window takes the lowest recent recommendation",
        Observation(20, 0),
        1,
        2,
        "ScaleUp",
        policy(scale_up=Behavior(30)),
        state(history=((10, 2),), idle_for=0),
    ),
    Case(
        "scale-down held inside the window",
        Observation(2, 0),
        5,
        5,
        "HoldStabilization",
        state=state(history=((30, 5),), idle_for=0),
    ),
    Case(
        "scale-down to the window's highest recommendation",
        Observation(2, 0),
        5,
        3,
        "ScaleDown",
        state=state(history=((90, 5), (30, 3)), idle_for=0),
    ),
    Case(
        "scale-down limited by maxStep",
        Observation(2, 0),
        6,
        4,
        "ScaleDown",
        policy(scale_down=Behavior(0, max_step=2)),
    ),
    Case(
        "busy workers keep their pods",
        Observation(0, 5),
        6,
        3,
        "ScaleDown",
        policy(scale_down=Behavior(0), cooldown_period=0),
    ),
    Case(
        "in-flight work blocks scale to zero",
        Observation(0, 1),
        2,
        1,
        "BusyWorkers",
        policy(scale_down=Behavior(0), cooldown_period=0, activation_threshold=5),
        state(idle_for=999),
    ),
    Case("no scale to zero during cooldown", Observation(0, 0), 1, 1, "HoldCooldown", state=state(idle_for=30)),
    Case("scale to zero after cooldown", Observation(0, 0), 1, 0, "ScaleToZero", state=state(idle_for=61)),
    Case(
        "N -> 0 at once after cooldown and window",
        Observation(0, 0),
        4,
        0,
        "ScaleToZero",
        state=state(history=((120, 4),), idle_for=120),
    ),
    Case(
        "N -> 0 waits for the scale-down window",
        Observation(0, 0),
        4,
        4,
        "HoldStabilization",
        state=state(history=((20, 4),), idle_for=120),
    ),
    Case(
        "zero respects the scale-down step",
        Observation(0, 0),
        3,
        2,
        "ScaleDown",
        policy(scale_down=Behavior(0, max_step=1)),
        state(idle_for=120),
    ),
    Case("lowered maxReplicaCount wins", Observation(100, 0), 8, 5, "ScaleDown", policy(max_replicas=5)),
    Case("paused keeps the current count", Observation(100, 0), 3, 3, "Paused", policy(paused=True)),
    Case(
        "paused-replicas sets the count",
        Observation(100, 0),
        3,
        7,
        "PausedReplicas",
        policy(paused=True, paused_replicas=7),
    ),
    Case(
        "redis down keeps the current count",
        Observation.failed("refused"),
        4,
        4,
        "RedisUnavailable",
        policy(fallback=Fallback(3, 6)),
        state(failures=1),
    ),
    Case(
        "redis down past failureThreshold uses fallback",
        Observation.failed("refused"),
        4,
        6,
        "Fallback",
        policy(fallback=Fallback(3, 6)),
        state(failures=2),
    ),
    Case(
        "redis down without fallback keeps current forever",
        Observation.failed("refused"),
        4,
        4,
        "RedisUnavailable",
        state=state(failures=50),
    ),
    Case(
        "redis back: normal decision again",
        Observation(2, 0),
        6,
        6,
        "HoldStabilization",
        policy(fallback=Fallback(3, 6)),
        state(history=((1, 6),), failures=7, idle_for=0),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    decision = desired_replicas(case.observation, case.policy, case.current, NOW, case.state)
    assert (decision.replicas, decision.reason) == (case.expected, case.reason), decision.message


def test_fallback_flags_and_recovery() -> None:
    p = policy(fallback=Fallback(failure_threshold=2, replicas=5))
    s = state(idle_for=0)
    first = desired_replicas(Observation.failed("x"), p, 2, NOW, s)
    second = desired_replicas(Observation.failed("x"), p, first.replicas, NOW + 5, first.state)
    back = desired_replicas(Observation(0, 0), p, second.replicas, NOW + 10, second.state)
    assert (first.replicas, first.fallback, first.ready) == (2, False, False)
    assert first.state.consecutive_failures == 1
    assert (second.replicas, second.fallback, second.state.consecutive_failures) == (5, True, 2)
    assert (back.fallback, back.ready, back.state.consecutive_failures) == (False, True, 0)


def run(
    policy_: Policy, current: int, observations: list[Observation], start: ScalerState, *, every: float = 5.0
) -> list[int]:
    """Replica counts after each poll, feeding each decision into the next."""
    counts, s = [], start
    for index, observation in enumerate(observations):
        decision = desired_replicas(observation, policy_, current, NOW + index * every, s)
        current, s = decision.replicas, decision.state
        counts.append(current)
    return counts


def test_fallback_never_drops_the_workers_that_were_busy() -> None:
    # 6 pods running 12 tasks, then Redis reads fail on and off: no flapping, nobody removed.
    p = policy(min_replicas=1, fallback=Fallback(3, 2), scale_down=Behavior(60, max_step=1))
    down = Observation.failed("timeout")
    polls = [Observation(0, 12)] + ([down] * 3 + [Observation(0, 12)]) * 4
    assert run(p, 6, polls, state(idle_for=0)) == [6] * len(polls)


def test_fallback_scales_down_through_the_window_and_steps() -> None:
    p = policy(min_replicas=1, fallback=Fallback(1, 2), scale_down=Behavior(60, max_step=1))
    # 6 was recommended a second ago; Redis fails from then on.
    counts = run(p, 6, [Observation.failed("refused")] * 20, state(history=((1, 6),), idle_for=0))
    assert counts[:12] == [6] * 12  # inside the scale-down window of that recommendation
    assert counts[12:16] == [5, 4, 3, 2] and counts[-1] == 2  # then one step per poll, to the fallback


def test_recovery_after_a_long_outage_still_waits_for_the_scale_down_window() -> None:
    p = policy(min_replicas=0, cooldown_period=0)
    polls = [Observation(0, 12)] + [Observation.failed("refused")] * 24 + [Observation(0, 0)] * 14
    counts = run(p, 6, polls, state(idle_for=0))
    assert counts[25] == 6  # the first good read after 2 minutes: the outage's entries hold it
    assert counts[-1] == 0  # once the window has passed


def test_a_restart_does_not_hold_back_scale_up() -> None:
    restored = ScalerState.restored(now=NOW, current=0)
    assert desired_replicas(Observation(20, 0), policy(), 0, NOW, restored).replicas == 10


def test_restart_holds_scale_down_for_one_window() -> None:
    restored = ScalerState.restored(now=NOW, current=5)
    held = desired_replicas(Observation(0, 0), policy(min_replicas=1), 5, NOW + 30, restored)
    released = desired_replicas(Observation(0, 0), policy(min_replicas=1), 5, NOW + 61, held.state)
    assert (held.replicas, released.replicas) == (5, 1)


# --------------------------------------------------------------------------- parsing


def test_policy_from_spec_reads_camel_case_and_annotations() -> None:
    spec = {
        "tasksPerReplica": 4,
        "minReplicaCount": 1,
        "maxReplicaCount": 8,
        "activationThreshold": 2,
        "pollingInterval": 2,
        "cooldownPeriod": 30,
        "scaleUp": {"maxStep": 3},
        "scaleDown": {"stabilizationWindowSeconds": 10, "maxStep": 1},
        "fallback": {"failureThreshold": 4, "replicas": 2},
    }
    parsed = Policy.from_spec(spec, {PAUSED_ANNOTATION: "True", PAUSED_REPLICAS_ANNOTATION: " 3 "})
    assert parsed == Policy(4, 1, 8, 2, 2.0, 30.0, Behavior(0, 3), Behavior(10, 1), Fallback(4, 2), True, 3)


def test_policy_from_empty_spec_uses_the_crd_defaults() -> None:
    assert Policy.from_spec({}) == Policy()


@pytest.mark.parametrize(
    ("spec", "annotations", "fragment"),
    [
        ({"minReplicaCount": 5, "maxReplicaCount": 2}, {}, "must not exceed maxReplicaCount"),
        ({"tasksPerReplica": 0}, {}, "tasksPerReplica must be >= 1"),
        ({"tasksPerReplica": "two"}, {}, "tasksPerReplica must be an integer"),
        ({"fallback": {"failureThreshold": 2}}, {}, "fallback.replicas is required"),
        ({"fallback": {"replicas": 50}}, {}, "must lie within"),
        ({"scaleDown": {"maxStep": 0}}, {}, "scaleDown.maxStep must be >= 1"),
        ({}, {PAUSED_REPLICAS_ANNOTATION: "lots"}, "paused-replicas must be an integer"),
        ({}, {PAUSED_REPLICAS_ANNOTATION: "-1"}, "paused-replicas must be >= 0"),
    ],
    ids=[
        "min-above-max",
        "zero-tasks-per-replica",
        "non-integer",
        "fallback-without-replicas",
        "fallback-out-of-range",
        "zero-step",
        "paused-replicas-text",
        "paused-replicas-negative",
    ],
)
def test_invalid_policy_is_a_policy_error(spec: dict, annotations: dict, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        Policy.from_spec(spec, annotations)


def test_policy_error_lists_every_problem() -> None:
    with pytest.raises(PolicyError) as raised:
        Policy.from_spec({"tasksPerReplica": 0, "minReplicaCount": 3, "maxReplicaCount": 1})
    assert len(raised.value.problems) == 2


# --------------------------------------------------------------------------- properties

behaviors = st.builds(Behavior, st.integers(0, 120).map(float), st.none() | st.integers(1, 5))


@st.composite
def policies(draw: st.DrawFn, *, pausable: bool = False, scale_to_zero: bool = False) -> Policy:
    low = 0 if scale_to_zero else draw(st.integers(0, 5))
    high = draw(st.integers(max(low, 1), 20))
    fallback = draw(st.none() | st.builds(Fallback, st.integers(1, 5), st.integers(low, high)))
    paused = draw(st.booleans()) if pausable else False
    paused_replicas = draw(st.none() | st.integers(0, 30)) if pausable else None
    return Policy(
        draw(st.integers(1, 8)),
        low,
        high,
        draw(st.integers(0, 10)),
        draw(st.sampled_from([1.0, 5.0])),
        float(draw(st.integers(0, 300))),
        draw(behaviors),
        draw(behaviors),
        fallback,
        paused,
        paused_replicas,
    )


observations = st.builds(Observation, st.integers(0, 200), st.integers(0, 60))


@st.composite
def states(draw: st.DrawFn) -> ScalerState:
    history = draw(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 20)), max_size=6))
    idle_for = draw(st.none() | st.integers(0, 600))
    failures = draw(st.integers(0, 8))
    return state(history=tuple(sorted(history, reverse=True)), idle_for=idle_for, failures=failures)


currents = st.integers(0, 25)


@given(policies(), observations, currents, states())
def test_bounded_by_min_and_max(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    assert p.min_replicas <= desired_replicas(o, p, current, NOW, s).replicas <= p.max_replicas


@given(policies(), currents, states())
def test_bounded_when_redis_fails(p: Policy, current: int, s: ScalerState) -> None:
    decision = desired_replicas(Observation.failed("x"), p, current, NOW, s)
    assert p.min_replicas <= decision.replicas <= p.max_replicas


@given(policies(), observations, st.integers(1, 100), currents, states())
def test_monotone_in_waiting(p: Policy, o: Observation, extra: int, current: int, s: ScalerState) -> None:
    more = Observation(o.waiting + extra, o.in_flight)  # type: ignore[operator]
    before = desired_replicas(o, p, current, NOW, s).replicas
    assert desired_replicas(more, p, current, NOW, s).replicas >= before


@given(policies(), observations, st.integers(1, 100), currents, states())
def test_monotone_in_in_flight(p: Policy, o: Observation, extra: int, current: int, s: ScalerState) -> None:
    more = Observation(o.waiting, o.in_flight + extra)  # type: ignore[operator]
    before = desired_replicas(o, p, current, NOW, s).replicas
    assert desired_replicas(more, p, current, NOW, s).replicas >= before


@given(policies(), observations, currents, states())
def test_never_below_busy_workers(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    busy = math.ceil(o.in_flight / p.tasks_per_replica)  # type: ignore[operator]
    assert desired_replicas(o, p, current, NOW, s).replicas >= min(busy, p.max_replicas)


@settings(max_examples=150)
@given(policies(), observations, currents, states())
def test_constant_load_converges_without_oscillating(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    seen = [current]
    now = NOW
    settle = 2 * max(p.scale_up.stabilization_window, p.scale_down.stabilization_window) + p.cooldown_period
    steps = int(settle / p.polling_interval) + 2 * 25 + 5  # windows + cooldown, then <= 25 steps each way
    for _ in range(steps):
        decision = desired_replicas(o, p, seen[-1], now, s)
        seen.append(decision.replicas)
        s, now = decision.state, now + p.polling_interval
    moves = [b - a for a, b in zip(seen[1:], seen[2:], strict=False) if b != a]
    assert all(m > 0 for m in moves) or all(m < 0 for m in moves), f"oscillates: {seen}"
    tail = seen[-10:]
    assert len(set(tail)) == 1, f"does not settle: {seen}"


@given(policies(), observations, currents, states())
def test_step_limits(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    assume(p.min_replicas <= current <= p.max_replicas)
    decision = desired_replicas(o, p, current, NOW, s)
    busy = min(math.ceil(o.in_flight / p.tasks_per_replica), p.max_replicas)  # type: ignore[operator]
    if p.scale_up.max_step is not None and decision.replicas > current:
        allowed = max(p.scale_up.max_step, busy - current, p.min_replicas - current)
        assert decision.replicas - current <= allowed
    if p.scale_down.max_step is not None and decision.replicas < current:
        assert current - decision.replicas <= p.scale_down.max_step


@given(policies(), observations, currents, states())
def test_scale_down_respects_the_window(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    """A decrease never goes below the highest recommendation seen within the scale-down window
    (going to zero additionally needs the cooldown; busy workers and maxReplicaCount aside)."""
    assume(p.min_replicas <= current <= p.max_replicas)
    decision = desired_replicas(o, p, current, NOW, s)
    if decision.replicas < current and decision.replicas > 0:
        window = [r for t, r in decision.state.recommendations if NOW - t <= p.scale_down.stabilization_window]
        assert decision.replicas >= min(max(window), p.max_replicas)


@given(policies(), observations, currents, states())
def test_scale_to_zero_only_after_cooldown(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    decision = desired_replicas(o, p, current, NOW, s)
    if decision.replicas == 0 and current > 0:
        assert p.min_replicas == 0
        assert o.load <= p.activation_threshold  # type: ignore[operator]
        assert s.last_active is not None and NOW - s.last_active >= p.cooldown_period


@given(policies(scale_to_zero=True), observations, states())
def test_activation_threshold_gates_zero_to_one(p: Policy, o: Observation, s: ScalerState) -> None:
    decision = desired_replicas(o, p, 0, NOW, s)
    if o.load > p.activation_threshold:  # type: ignore[operator]
        assert decision.replicas >= 1 and decision.active
    elif o.in_flight == 0:
        assert decision.replicas == 0 and decision.active is False


@given(policies(pausable=True), observations | st.just(Observation.failed("x")), currents, states())
def test_pause_wins(p: Policy, o: Observation, current: int, s: ScalerState) -> None:
    decision = desired_replicas(o, p, current, NOW, s)
    if p.paused_replicas is not None:
        assert (decision.replicas, decision.paused) == (p.paused_replicas, True)
    elif p.paused:
        assert (decision.replicas, decision.paused) == (current, True)
    else:
        assert not decision.paused


@given(policies(), currents, states(), st.integers(1, 12))
def test_fallback_after_threshold_then_recovery(p: Policy, current: int, s: ScalerState, n: int) -> None:
    assume(p.fallback is not None)
    fb = p.fallback
    assert fb is not None
    s = ScalerState(s.recommendations, s.last_active, s.last_scale, 0)
    now = NOW
    for i in range(1, n + 1):
        decision = desired_replicas(Observation.failed("down"), p, current, now, s)
        kept = max(p.min_replicas, min(current, p.max_replicas))
        assert decision.fallback == (i >= fb.failure_threshold)
        if decision.fallback:  # on the way to the fallback count, never past it
            assert min(kept, fb.replicas) <= decision.replicas <= max(kept, fb.replicas)
        else:
            assert decision.replicas == kept
        current, s, now = decision.replicas, decision.state, now + p.polling_interval
    recovered = desired_replicas(Observation(0, 0), p, current, now, s)
    assert recovered.ready and not recovered.fallback and recovered.state.consecutive_failures == 0


@settings(max_examples=200)
@given(policies(), st.integers(1, 150), st.integers(1, 30))
def test_load_drop_waits_for_window_then_cooldown(p: Policy, extra: int, busy_steps: int) -> None:
    """Busy for a while, then the queue empties: no decrease while the high recommendation is
    inside the scale-down window, each decrease within maxStep, zero only after the cooldown.
    (1 -> 0 is the activation phase: the cooldown governs it, as in KEDA.)"""
    high = Observation(p.activation_threshold + extra, 0)
    now, current, s = NOW, 0, ScalerState()
    for _ in range(busy_steps):
        decision = desired_replicas(high, p, current, now, s)
        current, s, now = decision.replicas, decision.state, now + p.polling_interval
    last_high, level = now - p.polling_interval, current
    horizon = p.scale_down.stabilization_window + p.cooldown_period + 30 * p.polling_interval
    while now <= last_high + horizon:
        decision = desired_replicas(Observation(0, 0), p, current, now, s)
        if now - last_high <= p.scale_down.stabilization_window:
            held = decision.replicas == level or (level == 1 and decision.replicas == 0)
            assert held, f"decreased {now - last_high:.0f}s after the last load"
        if decision.replicas < current and p.scale_down.max_step is not None:
            assert current - decision.replicas <= p.scale_down.max_step
        if decision.replicas == 0 and current > 0:
            assert now - last_high >= p.cooldown_period
        current, s, now = decision.replicas, decision.state, now + p.polling_interval
    assert current == p.min_replicas, "did not come down to minReplicaCount"
