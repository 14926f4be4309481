"""The config database's migrations on SQLite and PostgreSQL: empty -> head -> base
-> head, the models match them, the seed types are there, and the schema can share
a database with the scheduler's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from qsched_configs import db
from qsched_configs.domain import SEED_TYPES
from qsched_configs.store.models import metadata
from qsched_configs.store.sql import SqlConfigStore
from qsched_runtime.sql import make_engine
from qsched_scheduler import db as scheduler_db

TABLES = {
    "config_types",
    "config_contents",
    "config_revisions",
    "config_main_pointers",
    "config_main_changes",
    "config_id_counters",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return db.sqlite_url_for(tmp_path)
    make_database: Callable[[], str] = request.getfixturevalue("postgres_databases")
    return make_database()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _schema_drift(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": db.VERSION_TABLE}
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_migrations_upgrade_downgrade_and_upgrade_again(empty_db_url: str) -> None:
    assert db.current(empty_db_url) is None
    assert db.head() == "0001"

    db.upgrade(empty_db_url)
    assert _tables(empty_db_url) == TABLES | {db.VERSION_TABLE}
    assert db.current(empty_db_url) == db.head()
    assert _schema_drift(empty_db_url) == []  # the models and the migrations agree
    db.upgrade(empty_db_url)  # idempotent: what every service start does

    db.downgrade(empty_db_url)
    assert _tables(empty_db_url) <= {db.VERSION_TABLE}
    assert db.current(empty_db_url) is None

    db.upgrade(empty_db_url)
    store = SqlConfigStore(make_engine(empty_db_url))
    try:
        assert store.list_types(None, 10) == sorted(SEED_TYPES, key=lambda t: t.name)
        assert [t.name for t in SEED_TYPES if t.required_for_lab_runs] == ["hardware_config"]
    finally:
        store.close()


def test_the_schema_can_share_a_database_with_the_scheduler(empty_db_url: str) -> None:
    scheduler_db.upgrade(empty_db_url)
    db.upgrade(empty_db_url)
    assert scheduler_db.current(empty_db_url) == scheduler_db.head()
    assert db.current(empty_db_url) == db.head()
    db.downgrade(empty_db_url)
    assert scheduler_db.current(empty_db_url) == scheduler_db.head()
    assert not _tables(empty_db_url) & TABLES
    assert "jobs" in _tables(empty_db_url)
