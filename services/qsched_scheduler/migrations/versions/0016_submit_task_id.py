"""The job's task id, allocated at submit (issue 17): `jobs.task_id` holds the task id of the job's
latest run or, while it waits, the one its next run takes, so a handle can follow and cancel a job
by task id before it starts. Existing jobs get theirs: a waiting job (never staged, or queued again
by a rerun) a new UUID, a staged one its staged run's, the others their latest run's.

Revision ID: 0016_submit_task_id
Revises: 0015_run_code
Create Date: 2026-12-07
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_submit_task_id"
down_revision: str | Sequence[str] | None = "0015_run_code"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite batch mode may copy the table: keep AUTOINCREMENT so job order numbers are never reused.
JOBS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("jobs", table_kwargs=JOBS_TABLE) as batch:
        batch.add_column(sa.Column("task_id", sa.String(36), nullable=True))
    conn = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.Integer),
        sa.column("state", sa.String),
        sa.column("staged_task_id", sa.String),
        sa.column("task_id", sa.String),
    )
    runs = sa.table(
        "runs",
        sa.column("task_id", sa.String),
        sa.column("job_pk", sa.Integer),
        sa.column("attempt", sa.Integer),
    )
    latest = (
        sa.select(runs.c.task_id)
        .where(runs.c.job_pk == jobs.c.id)
        .order_by(runs.c.attempt.desc())
        .limit(1)
        .scalar_subquery()
    )
    # Running and finished jobs: their latest run's task id.
    conn.execute(sa.update(jobs).where(jobs.c.state != "QUEUED").values(task_id=latest))
    # Staged jobs: the staged run's.
    conn.execute(
        sa.update(jobs)
        .where(jobs.c.state == "QUEUED", jobs.c.staged_task_id.is_not(None))
        .values(task_id=jobs.c.staged_task_id)
    )
    # Waiting jobs: the id their next run takes.
    waiting = conn.execute(
        sa.select(jobs.c.id).where(jobs.c.state == "QUEUED", jobs.c.staged_task_id.is_(None))
    ).scalars()
    for pk in list(waiting):
        conn.execute(sa.update(jobs).where(jobs.c.id == pk).values(task_id=str(uuid.uuid4())))
    op.create_index("ix_jobs_task_id", "jobs", ["task_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_task_id", table_name="jobs")
    with op.batch_alter_table("jobs", table_kwargs=JOBS_TABLE) as batch:
        batch.drop_column("task_id")
