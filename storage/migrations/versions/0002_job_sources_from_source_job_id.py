"""a job's sources are the sources whose job_id names it: drop ingest_jobs.source_ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 15:00:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_jobs", schema=None) as batch_op:
        batch_op.drop_column("source_ids")


def downgrade() -> None:
    with op.batch_alter_table("ingest_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ids", sa.JSON(), nullable=False, server_default="[]"))
    # Rebuilt from the one link; a source retried since is listed under its newest job only.
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT job_id, id FROM sources WHERE job_id IS NOT NULL ORDER BY created_at, id")
    ).fetchall()
    by_job: dict[str, list[str]] = {}
    for job_id, source_id in rows:
        by_job.setdefault(job_id, []).append(source_id)
    for job_id, source_ids in by_job.items():
        connection.execute(
            sa.text("UPDATE ingest_jobs SET source_ids = :ids WHERE id = :id"), {"ids": json.dumps(source_ids), "id": job_id}
        )
