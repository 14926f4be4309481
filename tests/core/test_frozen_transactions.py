"""A process frozen in the middle of a transaction (SIGSTOP, a paused VM) must not block the other
replicas' writes for as long as its connection lives: PostgreSQL ends such a session after
qsched_core.sql.IDLE_IN_TRANSACTION_TIMEOUT_MS and its row locks go with it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from qsched_core import sql

pytestmark = pytest.mark.postgres


def test_a_transaction_left_idle_releases_its_locks(postgres_databases, monkeypatch):
    monkeypatch.setattr(sql, "IDLE_IN_TRANSACTION_TIMEOUT_MS", 500)
    url = postgres_databases()
    frozen, other = sql.make_engine(url), sql.make_engine(url)
    try:
        with other.begin() as conn:
            conn.execute(text("CREATE TABLE counters (id int PRIMARY KEY, n int)"))
            conn.execute(text("INSERT INTO counters VALUES (1, 0)"))
        stuck = frozen.connect()
        stuck.begin()
        stuck.execute(text("UPDATE counters SET n = n + 1 WHERE id = 1"))  # row lock, then nothing
        with other.begin() as conn:
            # Without the session timeout this waits for the lock until lock_timeout refuses it.
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text("UPDATE counters SET n = n + 10 WHERE id = 1"))
        with other.connect() as conn:
            assert conn.execute(text("SELECT n FROM counters")).scalar_one() == 10  # the frozen one's is gone
        stuck.invalidate()
    finally:
        frozen.dispose()
        other.dispose()
