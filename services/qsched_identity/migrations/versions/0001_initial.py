"""Initial schema: users (people and service principals), hashed bearer tokens, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "identity_users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("roles", sa.Text(), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("disable_time", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_identity_users"),
    )
    op.create_table(
        "identity_tokens",
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("revoke_time", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("token_id", name="pk_identity_tokens"),
        sa.ForeignKeyConstraint(
            ["user_name"], ["identity_users.name"], name="fk_identity_tokens_user_name_identity_users"
        ),
        sa.UniqueConstraint("sha256", name="uq_identity_tokens_sha256"),
    )
    op.create_index("ix_identity_tokens_user_name", "identity_tokens", ["user_name"])
    op.create_table(
        "identity_audit",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_audit"),
    )
    op.create_index("ix_identity_audit_time", "identity_audit", ["time"])


def downgrade() -> None:
    op.drop_index("ix_identity_audit_time", table_name="identity_audit")
    op.drop_table("identity_audit")
    op.drop_index("ix_identity_tokens_user_name", table_name="identity_tokens")
    op.drop_table("identity_tokens")
    op.drop_table("identity_users")
