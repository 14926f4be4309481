"""Device leases (issue 15): which scheduler replica dispatches a device. One row per device:
the holder (a replica id), the epoch (bumped by every takeover; the stage and claim transactions
check it, fencing a holder that lost the lease) and the expiry (seconds since the Unix epoch by the
database's clock, renewed by the holder every ~0.3 s), and what the holder last saw of the
device's executor (connected, unreachable since when and why), which every replica shows.

Revision ID: 0019_device_leases
Revises: 0018_event_notify
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_device_leases"
down_revision: str | Sequence[str] | None = "0018_event_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_leases",
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("executor_state", sa.String(16), nullable=False, server_default=""),
        sa.Column("executor_since", sa.Float(), nullable=False, server_default="0"),
        sa.Column("executor_message", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("device", name="pk_device_leases"),
    )


def downgrade() -> None:
    op.drop_table("device_leases")
