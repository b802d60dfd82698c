"""Alembic revisions apply on PostgreSQL and SQLite, one by one, with data in place."""

from __future__ import annotations

from app.core.schema import head_revision
from tests.support.migrations import upgrade_stepwise


def test_revisions_upgrade_and_downgrade_on_sqlite(tmp_path):
    upgrade_stepwise(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    assert head_revision() == "0003"
