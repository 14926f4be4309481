"""Schema migrations of the config database, run in code (no alembic.ini).

    from qsched_configs import db
    db.upgrade("sqlite:////var/lib/qsched/configs.db")

The scripts live in the qsched_configs.migrations package, so they ship with the
installed distribution. Alembic records the revision in its own table,
`alembic_version_configs`, so this database may share a PostgreSQL database with
the scheduler's (whose tables and version table have other names)."""

from __future__ import annotations

from pathlib import Path

from qsched_core.migrations import Migrations
from qsched_core.sql import sqlite_url

VERSION_TABLE = "alembic_version_configs"
SQLITE_FILE_NAME = "configs.db"
MIGRATIONS = Migrations(Path(__file__).resolve().with_name("migrations"), VERSION_TABLE)
config = MIGRATIONS.config
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
current = MIGRATIONS.current
head = MIGRATIONS.head


def sqlite_url_for(data_dir: Path) -> str:
    """The embedded config database of a data directory."""
    return sqlite_url(Path(data_dir) / SQLITE_FILE_NAME)
