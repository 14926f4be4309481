"""Schema migrations of the scheduler database, run in code (no alembic.ini).

    from qsched_scheduler import db
    db.upgrade("sqlite:////var/lib/qsched/scheduler.db")

The scripts live in the qsched_scheduler.migrations package, so they ship with
the installed distribution."""

from __future__ import annotations

from pathlib import Path

from qsched_core.migrations import Migrations

MIGRATIONS = Migrations(Path(__file__).resolve().with_name("migrations"))
config = MIGRATIONS.config
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
current = MIGRATIONS.current
head = MIGRATIONS.head
