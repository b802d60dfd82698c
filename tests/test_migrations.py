"""Alembic revisions apply on PostgreSQL and SQLite, one by one, with data in place."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from app.core.schema import alembic_config, head_revision


def insert_task(connection) -> int:  # type: ignore[no-untyped-def]
    """A task of user 1, in plain SQL (valid at every revision); returns its id."""
    connection.execute(
        text(
            "INSERT INTO tasks (owner_id, status, filename, source_key, source_format, original_size,"
            " attempts, created_at, updated_at) VALUES (1, 'pending', 'a', 'originals/x', 'PNG', 5, 0,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )
    return connection.execute(text("SELECT max(id) FROM tasks")).scalar_one()


def upgrade_stepwise(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(text("INSERT INTO users (id, token_hash, created_at) VALUES (1, 'h', CURRENT_TIMESTAMP)"))
        first_id = insert_task(connection)
        command.upgrade(config, "head")
        columns = {column["name"] for column in inspect(connection).get_columns("tasks")}
        row = connection.execute(
            text("SELECT original_size, source_width FROM tasks WHERE id = :id"), {"id": first_id}
        ).one()
        indexes = {index["name"] for index in inspect(connection).get_indexes("tasks")}
        # The newest task deleted: its id must not come back for the next one.
        connection.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": first_id})
        next_id = insert_task(connection)
        command.downgrade(config, "base")
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert {"source_width", "source_height"} <= columns
    assert tuple(row) == (5, None)  # old rows keep their data; dimensions unknown
    assert {"ix_tasks_owner_id_id", "ix_tasks_status_updated_at"} <= indexes
    assert next_id > first_id
    assert tables <= {"alembic_version"}


def test_revisions_upgrade_and_downgrade_on_sqlite(tmp_path):
    upgrade_stepwise(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    assert head_revision() == "0003"


@pytest.mark.integration
def test_revisions_upgrade_and_downgrade_on_postgresql(pg_database):
    upgrade_stepwise(pg_database)


@pytest.mark.integration
def test_api_pods_migrating_at_once_take_turns_on_postgresql(configure, pg_database, tmp_path):
    # With the bundled database every API pod's init container runs `imgproc migrate`.
    from concurrent.futures import ThreadPoolExecutor

    from app.core.schema import current_revision, upgrade

    configure(DATA_DIR=tmp_path / "data", DATABASE_URL=pg_database)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [pool.submit(upgrade) for _ in range(4)]
        errors = [future.exception() for future in results]
    assert errors == [None] * 4
    assert current_revision() == head_revision()
