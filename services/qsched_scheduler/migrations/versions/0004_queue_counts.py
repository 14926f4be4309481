"""Performance: a per-(device, priority) count of queued jobs (queue positions and depths
without COUNT(*) over the queue), pipelined dispatch (a queued job handed to the executor
ahead of time keeps its state and records the run's task id), and an index for the
"recent successful runs" query behind every estimate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGED = "staged_task_id IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "queue_counts",
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("queued", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device", "priority", name="pk_queue_counts"),
    )
    op.execute(
        "INSERT INTO queue_counts (device, priority, queued) "
        "SELECT device, priority, COUNT(*) FROM jobs WHERE state = 'QUEUED' GROUP BY device, priority"
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("staged_task_id", sa.String(36), nullable=True))
    # Partial: only the few staged jobs are in it, so the planner never takes it for the
    # queue's "staged_task_id IS NULL" (that would walk every queued job).
    op.create_index(
        "ix_jobs_staged_task_id",
        "jobs",
        ["staged_task_id"],
        unique=True,
        sqlite_where=sa.text(STAGED),
        postgresql_where=sa.text(STAGED),
    )
    op.create_index("ix_runs_state", "runs", ["state", "end_time"])


def downgrade() -> None:
    op.drop_index("ix_runs_state", table_name="runs")
    op.drop_index("ix_jobs_staged_task_id", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("staged_task_id")
    op.drop_table("queue_counts")
