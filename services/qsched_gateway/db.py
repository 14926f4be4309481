"""Schema migrations of the gateway's task registry, run in code (no alembic.ini).

The registry is SQLite `<data_dir>/gateway/tasks.db` unless `gateway_database_url` names another
database (e.g. PostgreSQL shared with the other services: the tables are prefixed `gateway_` and
the revision is kept in `alembic_version_gateway`). Migration 0001 also takes over a registry
file written before the registry had migrations (tables `submissions`, `tasks`, `results`)."""

from __future__ import annotations

from pathlib import Path

from qsched_core.migrations import Migrations
from qsched_core.sql import sqlite_url

VERSION_TABLE = "alembic_version_gateway"
SQLITE_FILE = Path("gateway") / "tasks.db"
MIGRATIONS = Migrations(Path(__file__).resolve().with_name("migrations"), VERSION_TABLE)
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
current = MIGRATIONS.current
head = MIGRATIONS.head


def sqlite_url_for(data_dir: Path) -> str:
    """The embedded registry of a data directory (the folder is created here)."""
    path = Path(data_dir) / SQLITE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(path)


def database_url(explicit: str, data_dir: Path) -> str:
    return explicit or sqlite_url_for(data_dir)
