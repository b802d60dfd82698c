"""What the API measures of its read replica is exported (imgproc_database_replica_lag_seconds):
the chart's replica-lag alert has no other source (no exporter runs beside PostgreSQL)."""

from __future__ import annotations

import pytest

from app.core.replica import Replica
from tests.support.metrics import value

LAG = "imgproc_database_replica_lag_seconds"


@pytest.mark.parametrize(("measured", "exported"), [(2.5, 2.5), (0.0, 0.0), (None, float("inf"))])
def test_every_lag_measurement_sets_the_gauge_an_unreachable_replica_as_infinite(monkeypatch, measured, exported):
    replica = Replica(None, None, max_lag=1.0, check_seconds=5.0, clock=lambda: 100.0)  # type: ignore[arg-type]
    monkeypatch.setattr(replica, "measure_lag", lambda: measured)
    assert replica.usable() is (measured is not None and measured <= 1.0)
    assert value(LAG) == exported
