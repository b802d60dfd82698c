"""Schema migration helpers shared by the SQLite (unit) and PostgreSQL (integration) tests."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, text

from app.tasks.schema import alembic_config


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
            text("SELECT original_size, source_width, claimed_by, presets FROM tasks WHERE id = :id"), {"id": first_id}
        ).one()
        upgraded_tables = set(inspect(connection).get_table_names())
        indexes = {index["name"] for index in inspect(connection).get_indexes("tasks")}
        # The newest task deleted: its id must not come back for the next one.
        connection.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": first_id})
        next_id = insert_task(connection)
        command.downgrade(config, "base")
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert {"source_width", "source_height", "claimed_by", "presets"} <= columns
    assert {"worker_heartbeats", "variants"} <= upgraded_tables
    assert tuple(row) == (5, None, None, None)  # old rows keep their data; dimensions, worker, presets unknown
    assert {"ix_tasks_owner_id_id", "ix_tasks_status_updated_at"} <= indexes
    assert next_id > first_id
    assert tables <= {"alembic_version"}
