"""presets asked for per task, and the variants made

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a task from before presets is made (and was made) as the default presets.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("presets", sa.String(1024)))
    # A completed task from before has no rows: its one result stays at tasks.result_key.
    op.create_table(
        "variants",
        sa.Column("task_id", sa.Integer, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("preset", sa.String(32), primary_key=True),
        sa.Column("format", sa.String(8), primary_key=True),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("variants")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("presets")
