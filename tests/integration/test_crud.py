"""crud statements whose SQL differs per database (tests/support/crud_contract.py), on PostgreSQL."""

from __future__ import annotations

import pytest

from app.tasks.schema import upgrade

# The contract's tests, collected here with this module's `database` fixture.
from tests.support.crud_contract import test_a_delivery_id_is_recorded_once_and_a_repeat_is_a_replay  # noqa: F401


@pytest.fixture(params=["postgresql"])
def database(request, configure, tmp_path, pg_database):  # type: ignore[no-untyped-def]
    configure(DATA_DIR=tmp_path / "data", DATABASE_URL=pg_database)
    upgrade()
    return request.param
