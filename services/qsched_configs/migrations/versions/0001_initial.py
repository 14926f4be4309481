"""Initial schema: config types (seeded with the four the lab uses), content,
revisions, main pointers, the main history and the revision id counters.

Revision ID: 0001
Revises:
Create Date: 2026-05-16
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A BIGINT key that is still SQLite's INTEGER rowid alias (so it autoincrements there).
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

# The seed job server's types, frozen here as they were at this revision.
SEED_TYPES = [
    ("hardware_config", "HW", "Hardware config of the station (YAML)", True),
    ("multiphoton_config", "MP", "Multiphoton pulse config (YAML)", False),
    ("floquet_storage_swap", "FL", "Floquet storage swap table (CSV)", False),
    ("man1_storage_swap", "M1", "Manipulate-1 storage swap table (CSV)", False),
]


def upgrade() -> None:
    types = op.create_table(
        "config_types",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("abbreviation", sa.String(2), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("required_for_lab_runs", sa.Boolean(), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_config_types"),
        sa.UniqueConstraint("abbreviation", name="uq_config_types_abbreviation"),
    )
    op.create_table(
        "config_contents",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_config_contents"),
    )
    op.create_table(
        "config_revisions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("revision_id", sa.String(32), nullable=False),
        sa.Column("config_type", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(16), nullable=False),
        sa.Column("original_filename", sa.String(255), nullable=False),
        sa.Column("creator", sa.String(128), nullable=False),
        sa.Column("create_time", TIMESTAMP, nullable=False),
        sa.Column("first_job_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_config_revisions"),
        sa.UniqueConstraint("revision_id", name="uq_config_revisions_revision_id"),
        sa.UniqueConstraint("config_type", "sha256", name="uq_config_revisions_config_type_sha256"),
        sa.ForeignKeyConstraint(
            ["config_type"], ["config_types.name"], name="fk_config_revisions_config_type_config_types"
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["config_contents.sha256"], name="fk_config_revisions_sha256_config_contents"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_config_revisions_type_order", "config_revisions", ["config_type", "id"])
    op.create_table(
        "config_main_pointers",
        sa.Column("config_type", sa.String(64), nullable=False),
        sa.Column("revision_id", sa.String(32), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("config_type", name="pk_config_main_pointers"),
        sa.ForeignKeyConstraint(
            ["config_type"], ["config_types.name"], name="fk_config_main_pointers_config_type_config_types"
        ),
        sa.ForeignKeyConstraint(
            ["revision_id"],
            ["config_revisions.revision_id"],
            name="fk_config_main_pointers_revision_id_config_revisions",
        ),
    )
    op.create_table(
        "config_main_changes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("config_type", sa.String(64), nullable=False),
        sa.Column("from_revision_id", sa.String(32), nullable=True),
        sa.Column("to_revision_id", sa.String(32), nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.Column("change_time", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_config_main_changes"),
        sa.ForeignKeyConstraint(
            ["config_type"], ["config_types.name"], name="fk_config_main_changes_config_type_config_types"
        ),
        sa.ForeignKeyConstraint(
            ["from_revision_id"],
            ["config_revisions.revision_id"],
            name="fk_config_main_changes_from_revision_id_config_revisions",
        ),
        sa.ForeignKeyConstraint(
            ["to_revision_id"],
            ["config_revisions.revision_id"],
            name="fk_config_main_changes_to_revision_id_config_revisions",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_config_main_changes_type_order", "config_main_changes", ["config_type", "id"])
    op.create_table(
        "config_id_counters",
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", name="pk_config_id_counters"),
    )

    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # stored as naive UTC there, like every other timestamp
    op.bulk_insert(
        types,
        [
            {
                "name": name,
                "abbreviation": abbreviation,
                "description": description,
                "required_for_lab_runs": required,
                "create_time": now,
            }
            for name, abbreviation, description, required in SEED_TYPES
        ],
    )


def downgrade() -> None:
    op.drop_table("config_id_counters")
    op.drop_index("ix_config_main_changes_type_order", table_name="config_main_changes")
    op.drop_table("config_main_changes")
    op.drop_table("config_main_pointers")
    op.drop_index("ix_config_revisions_type_order", table_name="config_revisions")
    op.drop_table("config_revisions")
    op.drop_table("config_contents")
    op.drop_table("config_types")
