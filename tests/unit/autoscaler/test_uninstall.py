"""delete_autoscalers' decisions, with an in-memory Kube and a fake clock (the real API server
and operator: test_operator_k8s.py's uninstall tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from autoscaler.kube import KubeError
from autoscaler.settings import FINALIZER
from autoscaler.uninstall import delete_autoscalers


@dataclass
class FakeKube:
    """Objects by name, each with its finalizers; deleting marks it, it goes once none is left."""

    finalizers: dict[str, list[str]]
    released_by_operator_after: float | None = None  # seconds after the delete, or never
    refuse_patch: bool = False
    now: float = 0.0
    deleted: set[str] = field(default_factory=set)
    patched: list[str] = field(default_factory=list)

    def autoscaler_names(self, namespace: str, selector: str) -> list[str]:
        assert (namespace, selector) == ("ns", "app.kubernetes.io/instance=r")
        if self.released_by_operator_after is not None and self.now >= self.released_by_operator_after:
            for name in self.deleted:
                self.finalizers[name] = [f for f in self.finalizers[name] if f != FINALIZER]
        for name in [n for n in self.deleted if n in self.finalizers and not self.finalizers[n]]:
            del self.finalizers[name]
        return sorted(self.finalizers)

    def delete_autoscaler(self, namespace: str, name: str) -> None:
        self.deleted.add(name)

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        self.patched.append(name)
        if self.refuse_patch:
            raise KubeError("ApiError", "403 Forbidden")
        self.finalizers[name] = [f for f in self.finalizers[name] if f != finalizer]

    def clock(self) -> float:
        self.now += 0.5  # each look at the clock is one poll later
        return self.now


CASES = {
    # name: (finalizers, operator releases after, refuse patch) -> (left, finalizers we removed)
    "nothing-to-delete": ({}, None, False, [], []),
    "operator-releases": ({"a": [FINALIZER], "b": [FINALIZER]}, 3.0, False, [], []),
    "no-operator": ({"a": [FINALIZER]}, None, False, [], ["a"]),
    "a-foreign-finalizer-stays": ({"a": [FINALIZER, "example.com/other"]}, None, False, ["a"], ["a"]),
    "removal-refused": ({"a": [FINALIZER]}, None, True, ["a"], ["a"]),
}


@pytest.mark.parametrize(("finalizers", "released_after", "refuse", "left", "patched"), CASES.values(), ids=CASES)
def test_delete_autoscalers(finalizers, released_after, refuse, left, patched, monkeypatch):
    names = set(finalizers)
    kube = FakeKube(
        {name: list(f) for name, f in finalizers.items()},
        released_by_operator_after=released_after,
        refuse_patch=refuse,
    )
    monkeypatch.setattr("autoscaler.uninstall.time.sleep", lambda seconds: None)
    assert delete_autoscalers(kube, "ns", "app.kubernetes.io/instance=r", timeout=5, clock=kube.clock) == left
    assert kube.deleted == names
    assert kube.patched == patched
