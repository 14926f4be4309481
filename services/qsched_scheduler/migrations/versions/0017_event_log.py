"""Live output (issue 16): a log event carries the run's log lines in `events.log` (JSON
{"lines": [...], "dropped": n}); NULL for every other event.

Revision ID: 0017_event_log
Revises: 0016_submit_task_id
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_event_log"
down_revision: str | Sequence[str] | None = "0016_submit_task_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite batch mode may copy the table: keep AUTOINCREMENT so event ids are never reused.
EVENTS_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("events", table_kwargs=EVENTS_TABLE) as batch:
        batch.add_column(sa.Column("log", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", table_kwargs=EVENTS_TABLE) as batch:
        batch.drop_column("log")
