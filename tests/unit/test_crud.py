"""crud statements whose SQL differs per database (tests/support/crud_contract.py), on SQLite."""

from __future__ import annotations

import pytest

from app.tasks.schema import upgrade
from tests.support.crud_contract import CrudContract


@pytest.fixture(params=["sqlite"])
def database(request, configure, tmp_path):  # type: ignore[no-untyped-def]
    configure(DATA_DIR=tmp_path / "data")
    upgrade()
    return request.param


class TestCrudOnSQLite(CrudContract):
    """The contract on SQLite (its tests: tests/support/crud_contract.py)"""
