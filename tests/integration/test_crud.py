"""crud statements whose SQL differs per database (tests/support/crud_contract.py), on PostgreSQL."""

from __future__ import annotations

import pytest

from app.tasks.schema import upgrade
from tests.support.crud_contract import CrudContract


@pytest.fixture(params=["postgresql"])
def database(request, configure, tmp_path, pg_database):  # type: ignore[no-untyped-def]
    configure(DATA_DIR=tmp_path / "data", DATABASE_URL=pg_database)
    upgrade()
    return request.param


class TestCrudOnPostgreSQL(CrudContract):
    """The contract on PostgreSQL (its tests: tests/support/crud_contract.py)"""
