"""The code a lab run ran with (issue 20): qsched, qick and the experiment's package, with git
commits where the code came from git, as the executor reported it with the run's end (JSON text,
CodeProvenance.to_dict; NULL before the run ends and for runs from before it was recorded).

Revision ID: 0015_run_code
Revises: 0014_calibration
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_run_code"
down_revision: str | Sequence[str] | None = "0014_calibration"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("code", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("code")
