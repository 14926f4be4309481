"""The scheduling engine (issue 12): a run records why the queue policy picked it, whether it
is only staged on its executor (handed over, not started), and its data file as a reference
(data_file_path now holds the name relative to the executor's data root; its hash and size).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("staged", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("reason_policy", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("reason_summary", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("reason_details", sa.Text(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("data_sha256", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("data_size_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for column in (
            "data_size_bytes",
            "data_sha256",
            "reason_details",
            "reason_summary",
            "reason_policy",
            "staged",
        ):
            batch.drop_column(column)
