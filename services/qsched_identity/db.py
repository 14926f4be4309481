"""Schema migrations of the identity database, run in code (no alembic.ini).

Every service process authenticates against this database, so several may start at
once on a fresh one; `upgrade` is safe to race, as every service's is (qsched_core.migrations)."""

from __future__ import annotations

import os
from pathlib import Path

from qsched_core.migrations import Migrations
from qsched_core.sql import sqlite_url

VERSION_TABLE = "alembic_version_identity"
SQLITE_FILE_NAME = "identity.db"
MIGRATIONS = Migrations(Path(__file__).resolve().with_name("migrations"), VERSION_TABLE)
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
current = MIGRATIONS.current
head = MIGRATIONS.head


def sqlite_url_for(data_dir: Path) -> str:
    return sqlite_url(Path(data_dir) / SQLITE_FILE_NAME)


def database_url(explicit: str, data_dir: Path) -> str:
    """The identity database: `explicit`, QSCHED_IDENTITY_DATABASE_URL, or SQLite in the data dir."""
    return explicit or os.environ.get("QSCHED_IDENTITY_DATABASE_URL", "") or sqlite_url_for(data_dir)
