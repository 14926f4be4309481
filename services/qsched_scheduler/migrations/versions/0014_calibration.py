"""Calibration the scheduler owns (issue 14): the state of each calibration on each device (last
run, fresh until, the revision its pass pushed, failures in a row).

Revision ID: 0014_calibration
Revises: 0013_reservations
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_calibration"
down_revision: str | Sequence[str] | None = "0013_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calibration_states",
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("last_run_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("passed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fresh_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("values", sa.Text(), nullable=False, server_default="{}"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("device", "name", name="pk_calibration_states"),
    )


def downgrade() -> None:
    op.drop_table("calibration_states")
