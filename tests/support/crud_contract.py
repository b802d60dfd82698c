"""crud statements whose SQL differs per database: tests run on SQLite (tests/unit/test_crud.py) and
PostgreSQL (tests/integration/test_crud.py), given a migrated `database` fixture."""

from __future__ import annotations

from app.core.db import session_scope
from app.tasks import crud


class CrudContract:
    """A test module subclasses it (class Test...) beside its own migrated `database` fixture."""

    def test_a_delivery_id_is_recorded_once_and_a_repeat_is_a_replay(self, database) -> None:
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
