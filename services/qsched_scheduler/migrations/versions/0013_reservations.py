"""Reservations and sessions (issue 13): one calendar per device and the sessions on devices,
kept across restarts.

Revision ID: 0013_reservations
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_reservations"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("reservation_id", sa.String(32), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("holders", sa.Text(), nullable=False),
        sa.Column("hard_end", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("cancelled_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("reservation_id", name="pk_reservations"),
    )
    op.create_index("ix_reservations_device_end", "reservations", ["device", "end_time"])
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("open_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_length_s", sa.Float(), nullable=False),
        sa.Column("idle_timeout_s", sa.Float(), nullable=False),
        sa.Column("failure_policy", sa.String(16), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_state", "sessions", ["state"])


def downgrade() -> None:
    op.drop_index("ix_sessions_state", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_reservations_device_end", table_name="reservations")
    op.drop_table("reservations")
