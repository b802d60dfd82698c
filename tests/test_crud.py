"""crud statements whose SQL differs per database, run on both: SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.core.schema import upgrade
from app.tasks import crud


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, configure, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        configure(DATA_DIR=tmp_path / "data")
    else:
        configure(DATA_DIR=tmp_path / "data", DATABASE_URL=request.getfixturevalue("pg_database"))
    upgrade()
    return request.param


def test_a_delivery_id_is_recorded_once_and_a_repeat_is_a_replay(database) -> None:
    with session_scope() as session:
        assert crud.record_delivery(session=session, delivery_id="first") is True
        assert crud.record_delivery(session=session, delivery_id="first") is False  # same transaction
        session.commit()
    with session_scope() as session:
        assert crud.record_delivery(session=session, delivery_id="first") is False  # committed before
        # The refused insert must leave the transaction usable (no aborted transaction on PostgreSQL).
        assert crud.record_delivery(session=session, delivery_id="second") is True
        session.commit()
    with session_scope() as session:
        assert crud.record_delivery(session=session, delivery_id="second") is False
