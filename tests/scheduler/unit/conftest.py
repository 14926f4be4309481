"""Fixtures shared by the engine's unit tests."""

from __future__ import annotations

import pytest

from qsched_scheduler import db
from qsched_scheduler.store.engine import make_engine
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.store.sql import SqlJobStore


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_store(request, tmp_path):
    """The engine's store: the memory fake, then SQLite and PostgreSQL (migrated)."""

    def make():
        if request.param == "memory":
            return MemoryJobStore()
        if request.param == "sqlite":
            url = f"sqlite:///{(tmp_path / 'jobs.db').as_posix()}"
        else:
            url = request.getfixturevalue("postgres_databases")()
        db.upgrade(url)
        return SqlJobStore(make_engine(url))

    return make
