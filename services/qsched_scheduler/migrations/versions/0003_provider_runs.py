"""Provider runs: the one-running-job-per-device rule applies to lab runs only (a cloud
device takes several jobs at once), and runs keep the gateway's submission id and the
fetched results (the result cache).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_jobs_one_running_per_device"
LAB_RUNNING_ONLY = "state = 'RUNNING' AND kind = 'LAB_EXPERIMENT'"
RUNNING_ONLY = "state = 'RUNNING'"


def _exclusive_index(where: str) -> None:
    op.create_index(
        INDEX, "jobs", ["device"], unique=True, sqlite_where=sa.text(where), postgresql_where=sa.text(where)
    )


def upgrade() -> None:
    op.drop_index(INDEX, table_name="jobs")
    _exclusive_index(LAB_RUNNING_ONLY)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("provider_submission_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("result_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("result_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("result_time")
        batch.drop_column("result_json")
        batch.drop_column("provider_submission_id")
    op.drop_index(INDEX, table_name="jobs")
    _exclusive_index(RUNNING_ONLY)
