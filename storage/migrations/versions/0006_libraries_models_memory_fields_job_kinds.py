"""per-library chunk tables and instructions; user_id, agent_id, role, categories and sync state on
sources; job kinds (reindex, prune) with their parameters; the `removed` source status

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("libraries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("instructions", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("chunk_table_key", sa.String(length=255), nullable=True))
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("agent_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("categories", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("gone_syncs", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("replaces", sa.String(), nullable=True))
    with op.batch_alter_table("ingest_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="ingest"))
        batch_op.add_column(sa.Column("parameters", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("removed_count", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        # A native enum there (SQLite stores the status as text); PostgreSQL 12+ adds a value inside a
        # transaction as long as the same transaction does not use it.
        op.execute("ALTER TYPE sourcestatus ADD VALUE IF NOT EXISTS 'removed'")


def downgrade() -> None:
    connection = op.get_bind()
    connection.execute(sa.text("DELETE FROM sources WHERE status = 'removed'"))
    connection.execute(sa.text("DELETE FROM ingest_jobs WHERE kind != 'ingest'"))
    with op.batch_alter_table("ingest_jobs", schema=None) as batch_op:
        batch_op.drop_column("removed_count")
        batch_op.drop_column("parameters")
        batch_op.drop_column("kind")
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("replaces")
        batch_op.drop_column("gone_syncs")
        batch_op.drop_column("categories")
        batch_op.drop_column("role")
        batch_op.drop_column("agent_id")
        batch_op.drop_column("user_id")
    with op.batch_alter_table("libraries", schema=None) as batch_op:
        batch_op.drop_column("chunk_table_key")
        batch_op.drop_column("instructions")
    # PostgreSQL cannot drop a value from an enum; an unused 'removed' is harmless.
