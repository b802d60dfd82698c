"""Third-party CRDs on the kube-apiserver test bed (Gateway API, Prometheus Operator)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def create_crds(kube: Any, crds: Iterable[dict[str, Any]]) -> None:
    """Creates the CRDs; those an earlier test of this bed created are left as they are."""
    for crd in crds:
        try:
            kube.create(crd)
        except Exception as error:  # noqa: BLE001 - already there from an earlier test of this bed
            if "AlreadyExists" not in str(error) and "409" not in str(error):
                raise
