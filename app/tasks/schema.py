"""Alembic, driven from code: `imgproc migrate` and the start-up check."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.core.db import get_engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent.parent / "migrations"  # app/migrations, beside app/tasks


class DatabaseNotMigrated(RuntimeError):
    pass


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision() -> str | None:
    with get_engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


# Any constant shared by every process that migrates this database (pg_advisory_xact_lock key).
_MIGRATION_LOCK = 0x696D6770726F63  # "imgproc"


def upgrade(*, wait_seconds: float = 0) -> None:
    """Upgrades to head; waits up to `wait_seconds` for the database to accept connections
    (a Helm pre-install hook runs before the database pod is ready). On PostgreSQL one process
    migrates at a time (several API pods start together); the others then find it done."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with get_engine().begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            return
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not reachable yet (%s); retrying", exc.orig)
            time.sleep(2)


def wait_until_current(*, wait_seconds: float) -> bool:
    """True once the schema is at head (migrated by someone else, e.g. the Helm hook Job)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if current_revision() == head_revision():
                return True
        except OperationalError as exc:
            log.warning("database not reachable yet (%s)", exc.orig)
        if time.monotonic() >= deadline:
            return False
        time.sleep(2)


def assert_database_current() -> None:
    current, head = current_revision(), head_revision()
    if current != head:
        raise DatabaseNotMigrated(
            f"The database schema is at revision {current or 'none'}, the code needs {head}. "
            "Run `imgproc migrate` first."
        )
