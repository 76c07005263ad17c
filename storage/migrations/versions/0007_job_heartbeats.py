"""jobs renew a heartbeat and count their attempts: ingest_jobs.heartbeat_at, ingest_jobs.attempts;
jobs can be cancelled: the `cancelled` job and source status, ingest_jobs.cancelled_count

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("heartbeat_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("cancelled_count", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        # Native enums there (SQLite stores statuses as text); see 0006.
        op.execute("ALTER TYPE sourcestatus ADD VALUE IF NOT EXISTS 'cancelled'")
        op.execute("ALTER TYPE jobstatus ADD VALUE IF NOT EXISTS 'cancelled'")


def downgrade() -> None:
    # PostgreSQL cannot drop a value from an enum: rows that had it read `failed` instead.
    connection = op.get_bind()
    connection.execute(sa.text("UPDATE sources SET status = 'failed' WHERE status = 'cancelled'"))
    connection.execute(sa.text("UPDATE ingest_jobs SET status = 'failed' WHERE status = 'cancelled'"))
    with op.batch_alter_table("ingest_jobs", schema=None) as batch_op:
        batch_op.drop_column("cancelled_count")
        batch_op.drop_column("attempts")
        batch_op.drop_column("heartbeat_at")
