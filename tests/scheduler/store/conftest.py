"""Databases for the scheduler's store tests: a migrated SQLite file per test (copied
from one migrated template) and one migrated PostgreSQL database per session,
emptied before each test that uses it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from qsched_scheduler import db
from qsched_scheduler.store.engine import SQLITE_FILE_NAME, sqlite_url_for

TABLES = (
    "events",
    "runs",
    "jobs",
    "id_counters",
    "queue_counts",
    "reservations",
    "sessions",
    "calibration_states",
    "device_leases",
)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, to copy (migrating every test's file would be slow)."""
    data_dir = tmp_path_factory.mktemp("sqlite-template")
    db.upgrade(sqlite_url_for(data_dir))
    return data_dir / SQLITE_FILE_NAME


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty SQLite database of this test."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(sqlite_template, data_dir / SQLITE_FILE_NAME)
    return sqlite_url_for(data_dir)


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    db.upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def clean_postgres_url(migrated_postgres_url: str) -> Iterator[str]:
    """The session's migrated PostgreSQL database, emptied (ids and orders restart at 1)."""
    import psycopg

    with psycopg.connect(migrated_postgres_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    yield migrated_postgres_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database of each SQL backend."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "clean_postgres_url")
