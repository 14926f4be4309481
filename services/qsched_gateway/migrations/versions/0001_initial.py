"""The task registry on the shared SQL runtime: submissions, tasks and results, prefixed `gateway_`.

A registry file written before this migration (raw sqlite3: tables `submissions`, `tasks`,
`results`, no version table) is taken over: its rows are copied into the new tables and the old
tables dropped, in the same transaction, so an upgraded gateway still answers Watch, Cancel and
FetchResult for the tasks it submitted before.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The pre-migration schema's tables and the columns copied from each (JSON text stays text).
LEGACY = {
    "submissions": (
        "gateway_submissions",
        "submission_id, request_id, job_id, device, kind, spec_json, task_ids_json, created",
        "submission_id, request_id, job_id, device, kind, spec, task_ids, created",
    ),
    "tasks": (
        "gateway_tasks",
        "task_id, submission_id, provider, device, native_id, circuit_indices_json, shots, state, "
        "provider_status, message, queue_position, meta_json, created, updated",
        "task_id, submission_id, provider, device, native_id, circuit_indices, shots, state, "
        "provider_status, message, queue_position, meta, created, updated",
    ),
    "results": ("gateway_results", "task_id, result_json", "task_id, result"),
}


def upgrade() -> None:
    op.create_table(
        "gateway_submissions",
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("task_ids", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("submission_id", name="pk_gateway_submissions"),
        sa.UniqueConstraint("request_id", name="uq_gateway_submissions_request_id"),
    )
    op.create_table(
        "gateway_tasks",
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("submission_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("native_id", sa.String(200), nullable=False),
        sa.Column("circuit_indices", sa.Text(), nullable=False),
        sa.Column("shots", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("provider_status", sa.Text(), nullable=False, server_default=""),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("queue_position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_gateway_tasks"),
    )
    op.create_index("ix_gateway_tasks_submission_id", "gateway_tasks", ["submission_id"])
    op.create_index("ix_gateway_tasks_provider_state", "gateway_tasks", ["provider", "state"])
    op.create_table(
        "gateway_results",
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_gateway_results"),
    )
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for legacy, (table, old_columns, new_columns) in LEGACY.items():
        # Only the gateway's own old tables (a shared database may hold another "tasks").
        wanted = {c.strip() for c in old_columns.split(",")}
        if legacy in existing and wanted <= {c["name"] for c in inspector.get_columns(legacy)}:
            op.execute(f"INSERT INTO {table} ({new_columns}) SELECT {old_columns} FROM {legacy}")
            op.drop_table(legacy)


def downgrade() -> None:
    op.drop_table("gateway_results")
    op.drop_index("ix_gateway_tasks_provider_state", table_name="gateway_tasks")
    op.drop_index("ix_gateway_tasks_submission_id", table_name="gateway_tasks")
    op.drop_table("gateway_tasks")
    op.drop_table("gateway_submissions")
