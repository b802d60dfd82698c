"""Alembic revisions apply on SQLite, one by one, with data in place (PostgreSQL: the integration tier)."""

from __future__ import annotations

from app.tasks.schema import head_revision
from tests.support.migrations import upgrade_stepwise


def test_revisions_upgrade_and_downgrade_on_sqlite(tmp_path):
    upgrade_stepwise(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    assert head_revision() == "0005"
