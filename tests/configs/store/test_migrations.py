"""The config database's migrations on SQLite and PostgreSQL: empty -> head -> base
-> head, the models match them, the seed types are there, and the schema can share
a database with the scheduler's."""

from __future__ import annotations

from qsched_configs import db
from qsched_configs.domain import SEED_TYPES
from qsched_configs.store.models import metadata
from qsched_configs.store.sql import SqlConfigStore
from qsched_core.sql import make_engine
from qsched_scheduler import db as scheduler_db
from tests.support.migrations import schema_drift, table_names

TABLES = {
    "config_types",
    "config_contents",
    "config_revisions",
    "config_main_pointers",
    "config_main_changes",
    "config_id_counters",
}


def test_migrations_upgrade_downgrade_and_upgrade_again(empty_db_url: str) -> None:
    assert db.current(empty_db_url) is None
    assert db.head() == "0001"

    db.upgrade(empty_db_url)
    assert table_names(empty_db_url) == TABLES | {db.VERSION_TABLE}
    assert db.current(empty_db_url) == db.head()
    assert schema_drift(empty_db_url, metadata, db.VERSION_TABLE) == []  # the models and the migrations agree
    db.upgrade(empty_db_url)  # idempotent: what every service start does

    db.downgrade(empty_db_url)
    assert table_names(empty_db_url) <= {db.VERSION_TABLE}
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
    assert not table_names(empty_db_url) & TABLES
    assert "jobs" in table_names(empty_db_url)
