"""Re-runs: a queue-order key separate from the submission order, the settings each
run used, and the idempotency key of the last re-run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUE_ORDER_KEY = "QUEUE-ORDER"
# SQLite batch mode copies the table: keep AUTOINCREMENT so job order numbers are never reused.
JOBS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    # Index changes go outside batch mode: SQLite's table copy cannot rebuild a DESC expression.
    op.drop_index("ix_jobs_queue", table_name="jobs")
    with op.batch_alter_table("jobs", table_kwargs=JOBS_TABLE) as batch:
        batch.add_column(sa.Column("queue_order", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("rerun_request_id", sa.String(128), nullable=True))
    # Existing jobs keep their FIFO order; the counter continues after them.
    op.execute("UPDATE jobs SET queue_order = id")
    op.execute(
        sa.text(
            "INSERT INTO id_counters (prefix, counter) SELECT :key, COALESCE(MAX(id), 0) FROM jobs"
        ).bindparams(key=QUEUE_ORDER_KEY)
    )
    with op.batch_alter_table("jobs", table_kwargs=JOBS_TABLE) as batch:
        batch.alter_column("queue_order", existing_type=sa.BigInteger(), nullable=False)
    op.create_index("ix_jobs_queue", "jobs", ["device", "state", sa.text("priority DESC"), "queue_order"])

    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("payload", sa.Text(), nullable=True))
    op.execute("UPDATE runs SET payload = (SELECT jobs.payload FROM jobs WHERE jobs.id = runs.job_pk)")
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("payload", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("payload")
    op.execute(sa.text("DELETE FROM id_counters WHERE prefix = :key").bindparams(key=QUEUE_ORDER_KEY))
    op.drop_index("ix_jobs_queue", table_name="jobs")
    with op.batch_alter_table("jobs", table_kwargs=JOBS_TABLE) as batch:
        batch.drop_column("rerun_request_id")
        batch.drop_column("queue_order")
    op.create_index("ix_jobs_queue", "jobs", ["device", "state", sa.text("priority DESC"), "id"])
