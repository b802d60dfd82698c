"""task ids are never reused on SQLite

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

A plain INTEGER PRIMARY KEY on SQLite hands out max(id) + 1, so deleting the newest task
gave its id to the next upload, while a message, a report or a cached result URL for the
deleted one could still be on its way. AUTOINCREMENT never reuses an id. PostgreSQL's
sequence never did; nothing changes there.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _recreate_tasks(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Only a copy into a new table can change this on SQLite; nothing references tasks.
    with op.batch_alter_table("tasks", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _recreate_tasks(autoincrement=True)


def downgrade() -> None:
    _recreate_tasks(autoincrement=False)
