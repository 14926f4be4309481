"""Initial schema: jobs, runs, events and the job id counters.

Revision ID: 0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A BIGINT key that is still SQLite's INTEGER rowid alias (so it autoincrements there).
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)
RUNNING_ONLY = "state = 'RUNNING'"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=True),
        sa.Column("end_time", TIMESTAMP, nullable=True),
        sa.Column("error_reason", sa.String(128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("trace_parent", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("job_id", name="uq_jobs_job_id"),
        sa.UniqueConstraint("request_id", name="uq_jobs_request_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_queue", "jobs", ["device", "state", sa.text("priority DESC"), "id"])
    op.create_index(
        "uq_jobs_one_running_per_device",
        "jobs",
        ["device"],
        unique=True,
        sqlite_where=sa.text(RUNNING_ONLY),
        postgresql_where=sa.text(RUNNING_ONLY),
    )

    op.create_table(
        "runs",
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=True),
        sa.Column("end_time", TIMESTAMP, nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error_reason", sa.String(128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("data_file_path", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("config_revisions", sa.Text(), nullable=False),
        sa.Column("provider_task_ids", sa.Text(), nullable=False),
        sa.Column("executor_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_runs"),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], name="fk_runs_job_pk_jobs", ondelete="CASCADE"),
        sa.UniqueConstraint("job_pk", "attempt", name="uq_runs_job_pk_attempt"),
    )

    op.create_table(
        "events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("job_pk", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(["job_pk"], ["jobs.id"], name="fk_events_job_pk_jobs", ondelete="CASCADE"),
        sa.UniqueConstraint("job_pk", "seq", name="uq_events_job_pk_seq"),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "id_counters",
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name="pk_id_counters"),
    )


def downgrade() -> None:
    op.drop_table("id_counters")
    op.drop_table("events")
    op.drop_table("runs")
    op.drop_index("uq_jobs_one_running_per_device", table_name="jobs")
    op.drop_index("ix_jobs_queue", table_name="jobs")
    op.drop_table("jobs")
