"""Schema migrations of the identity database, run in code (no alembic.ini).

Every service process authenticates against this database, so several may start at
once on a fresh one; `upgrade` is safe to race: SQLite's `BEGIN IMMEDIATE` serialises
the migration transactions, and on PostgreSQL an advisory lock does."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from sqlalchemy import text

from qsched_core.migrations import Migrations
from qsched_core.sql import make_engine, sqlite_url

VERSION_TABLE = "alembic_version_identity"
SQLITE_FILE_NAME = "identity.db"
MIGRATIONS = Migrations(Path(__file__).resolve().with_name("migrations"), VERSION_TABLE)
downgrade = MIGRATIONS.downgrade
current = MIGRATIONS.current
head = MIGRATIONS.head
_PG_LOCK_KEY = 0x7153_6964  # "qSid": any constant shared by every qsched process


def sqlite_url_for(data_dir: Path) -> str:
    return sqlite_url(Path(data_dir) / SQLITE_FILE_NAME)


def database_url(explicit: str, data_dir: Path) -> str:
    """The identity database: `explicit`, QSCHED_IDENTITY_DATABASE_URL, or SQLite in the data dir."""
    return explicit or os.environ.get("QSCHED_IDENTITY_DATABASE_URL", "") or sqlite_url_for(data_dir)


def upgrade(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
                connection.commit()
            try:
                command.upgrade(MIGRATIONS.config(connection), revision)
            finally:
                if postgres:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
                    connection.commit()
    finally:
        engine.dispose()
