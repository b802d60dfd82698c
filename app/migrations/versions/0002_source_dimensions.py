"""source dimensions known at upload

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: tasks uploaded before this revision have no recorded dimensions.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("source_width", sa.Integer))
        batch.add_column(sa.Column("source_height", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("source_height")
        batch.drop_column("source_width")
