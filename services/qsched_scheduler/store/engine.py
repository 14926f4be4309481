"""The scheduler's database: an embedded SQLite file in the data directory, or
PostgreSQL (engines and their settings live in qsched_core.sql)."""

from __future__ import annotations

from pathlib import Path

from qsched_core.sql import make_engine, read_only, sqlite_url

SQLITE_FILE_NAME = "scheduler.db"

__all__ = ["make_engine", "read_only", "sqlite_url_for"]


def sqlite_url_for(data_dir: Path) -> str:
    """The embedded database of a data directory."""
    return sqlite_url(Path(data_dir) / SQLITE_FILE_NAME)
