"""The WorkerAutoscaler ``status`` as a pure function of the decision (no I/O).

Conditions follow the Kubernetes convention (type/status/reason/message/lastTransitionTime):
the transition time changes only when the status value changes. Times are RFC 3339 UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from autoscaler.scaling import Decision, ScalerState

CONDITION_TYPES = ("Ready", "Active", "Fallback", "Paused")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _word(value: bool | None) -> str:
    return "Unknown" if value is None else "True" if value else "False"


def condition(kind: str, value: bool | None, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": _word(value), "reason": reason, "message": message}


def merge_conditions(
    previous: list[Mapping[str, Any]] | None, updates: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    """All four conditions in a fixed order; untouched ones keep their old value."""
    old = {c.get("type"): dict(c) for c in previous or [] if isinstance(c, Mapping)}
    new = {c["type"]: c for c in updates}
    merged = []
    for kind in CONDITION_TYPES:
        before = old.get(kind)
        after = new.get(kind)
        if after is None:
            merged.append(before or {**condition(kind, None, "NotObserved"), "lastTransitionTime": iso(now)})
            continue
        same = before is not None and before.get("status") == after["status"]
        since = before.get("lastTransitionTime") if same and before else None
        merged.append({**after, "lastTransitionTime": since or iso(now)})
    return merged


def decision_status(
    decision: Decision,
    *,
    previous: Mapping[str, Any],
    backlog: int | None,
    in_flight: int | None,
    current: int,
    generation: int | None,
    now: float,
) -> dict[str, Any]:
    """``status`` after a poll that reached the decision function."""
    state = decision.state
    if decision.ready:
        ready = condition("Ready", True, "QueueObserved", "queue read and target scaled as decided")
    else:
        ready = condition("Ready", False, "RedisUnavailable", decision.message)
    load = f"load {(backlog or 0) + (in_flight or 0)} (waiting {backlog} + in-flight {in_flight})"
    if decision.active is None:
        active = condition("Active", None, "RedisUnavailable", "load unknown")
    elif decision.active:
        active = condition("Active", True, "LoadAboveThreshold", load)
    else:
        active = condition("Active", False, "LoadAtOrBelowThreshold", load)
    fallback = condition(
        "Fallback",
        decision.fallback,
        "FallbackActive" if decision.fallback else "NoFallback",
        decision.message if decision.fallback else "",
    )
    paused = condition(
        "Paused",
        decision.paused,
        decision.reason if decision.paused else "NotPaused",
        decision.message if decision.paused else "",
    )
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "backlog": backlog if backlog is not None else previous.get("backlog"),
        "inFlight": in_flight if in_flight is not None else previous.get("inFlight"),
        "recommendation": decision.recommendation
        if decision.recommendation is not None
        else previous.get("recommendation"),
        "desiredReplicas": decision.replicas,
        "currentReplicas": current,
        "lastScaleTime": iso(state.last_scale) or previous.get("lastScaleTime"),
        "lastActiveTime": iso(state.last_active) or previous.get("lastActiveTime"),
        "consecutiveFailures": state.consecutive_failures,
        "conditions": merge_conditions(previous.get("conditions"), [ready, active, fallback, paused], now),
    }
    return {k: v for k, v in status.items() if v is not None}


def error_status(
    *, previous: Mapping[str, Any], reason: str, message: str, generation: int | None, now: float
) -> dict[str, Any]:
    """``status`` when the poll stopped before deciding (invalid spec, missing target...)."""
    status = {k: v for k, v in previous.items() if k != "conditions"}
    status["observedGeneration"] = generation
    status["conditions"] = merge_conditions(
        previous.get("conditions"), [condition("Ready", False, reason, message)], now
    )
    return {k: v for k, v in status.items() if v is not None}


def restored_state(status: Mapping[str, Any], *, now: float, current: int) -> ScalerState:
    """What survives an operator restart: the cooldown start and the failure count."""
    return ScalerState.restored(
        now=now,
        current=current,
        last_active=parse_time(status.get("lastActiveTime")),
        last_scale=parse_time(status.get("lastScaleTime")),
        consecutive_failures=int(status.get("consecutiveFailures") or 0),
    )
