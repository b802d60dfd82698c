"""status.py: conditions keep their transition time until their value changes; restart state."""

from __future__ import annotations

from autoscaler.scaling import Observation, Policy, ScalerState, desired_replicas
from autoscaler.status import decision_status, error_status, iso, merge_conditions, parse_time, restored_state

T0 = 1_800_000_000.0


def test_condition_transition_time_changes_only_with_the_value() -> None:
    first = merge_conditions([], [{"type": "Ready", "status": "True", "reason": "A", "message": ""}], T0)
    same = merge_conditions(first, [{"type": "Ready", "status": "True", "reason": "B", "message": "x"}], T0 + 60)
    flipped = merge_conditions(same, [{"type": "Ready", "status": "False", "reason": "C", "message": ""}], T0 + 90)
    ready = [next(c for c in conds if c["type"] == "Ready") for conds in (first, same, flipped)]
    assert [c["lastTransitionTime"] for c in ready] == [iso(T0), iso(T0), iso(T0 + 90)]
    assert ready[1]["reason"] == "B"
    assert [c["type"] for c in flipped] == ["Ready", "Active", "Fallback", "Paused"]


def test_decision_status_fields() -> None:
    decision = desired_replicas(Observation(5, 2), Policy(), 1, T0, ScalerState())
    status = decision_status(decision, previous={}, backlog=5, in_flight=2, current=1, generation=3, now=T0)
    assert (status["backlog"], status["inFlight"]) == (5, 2)
    assert (status["desiredReplicas"], status["currentReplicas"]) == (4, 1)
    assert (status["recommendation"], status["observedGeneration"]) == (4, 3)
    assert status["consecutiveFailures"] == 0
    assert status["lastScaleTime"] == status["lastActiveTime"] == iso(T0)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Active": "True",
        "Fallback": "False",
        "Paused": "False",
    }


def test_failed_read_keeps_the_last_counts_and_marks_active_unknown() -> None:
    decision = desired_replicas(Observation.failed("refused"), Policy(), 2, T0, ScalerState())
    status = decision_status(
        decision, previous={"backlog": 9, "inFlight": 1}, backlog=None, in_flight=None, current=2, generation=1, now=T0
    )
    assert (status["backlog"], status["inFlight"], status["consecutiveFailures"]) == (9, 1, 1)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Ready"] == ("False", "RedisUnavailable") and conditions["Active"][0] == "Unknown"


def test_error_status_only_touches_ready() -> None:
    active = {"type": "Active", "status": "True", "lastTransitionTime": iso(T0)}
    previous = {"backlog": 3, "conditions": [active]}
    status = error_status(previous=previous, reason="ScaleTargetNotFound", message="gone", generation=2, now=T0 + 5)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["backlog"] == 3 and conditions["Active"]["lastTransitionTime"] == iso(T0)
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "ScaleTargetNotFound")


def test_restored_state_keeps_cooldown_and_failures() -> None:
    state = restored_state({"lastActiveTime": iso(T0), "consecutiveFailures": 2}, now=T0 + 100, current=4)
    assert state == ScalerState((), T0, None, 2, scale_down_floor=(T0 + 100, 4))
    assert parse_time("garbage") is None and parse_time(None) is None
