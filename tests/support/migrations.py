"""Checks shared by the migration tests of every database (scheduler, config service)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect

from qsched_core.migrations import DEFAULT_VERSION_TABLE
from qsched_core.sql import make_engine


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def schema_drift(url: str, metadata: MetaData, version_table: str = DEFAULT_VERSION_TABLE) -> list:
    """What the migrated database and the models disagree on ([] when they agree)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "version_table": version_table}
            return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)
    finally:
        engine.dispose()
