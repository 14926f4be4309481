"""A database that refuses writes is named (issue 18): what SQLite and PostgreSQL raise when they
refuse a write is recognised as STORAGE_UNAVAILABLE (UNAVAILABLE, retryable), and the same
engine writes again once the refusal ends (here: a PostgreSQL user whose writes are revoked,
then granted back; a SQLite database locked by another connection, then released)."""

from __future__ import annotations

import secrets
import sqlite3
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from qsched_core.sql import StorageUnavailable, is_storage_full, is_storage_refusing, make_engine
from qsched_runtime.errors import _storage_error

WRITE = text("INSERT INTO control_kv (key, value) VALUES (:k, 'v')")


def _write(engine, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(WRITE, {"k": key})


def _refused(engine, key: str) -> Exception:
    with pytest.raises(Exception) as caught:
        _write(engine, key)
    return caught.value


def _named(error: Exception) -> None:
    assert is_storage_refusing(error) and not is_storage_full(error), error
    named = _storage_error(error)
    assert isinstance(named, StorageUnavailable) and named.reason == "STORAGE_UNAVAILABLE"
    assert named.code == "UNAVAILABLE"


@pytest.fixture
def table_sql():
    return "CREATE TABLE control_kv (key TEXT PRIMARY KEY, value TEXT)"


def test_sqlite_locked_by_another_connection(tmp_path, table_sql, monkeypatch):
    import qsched_core.sql as sql

    monkeypatch.setattr(sql, "BUSY_TIMEOUT_MS", 2_000)  # the refusal comes after the busy timeout
    monkeypatch.setattr(sql, "REFUSING_BUSY_TIMEOUT_MS", 100)  # then the next ones come sooner
    path = tmp_path / "x.db"
    engine = make_engine(f"sqlite:///{path.as_posix()}")
    with engine.begin() as conn:
        conn.execute(text(table_sql))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        began = time.monotonic()
        _named(_refused(engine, "a"))
        assert time.monotonic() - began >= 1.9
        began = time.monotonic()
        _named(_refused(engine, "a"))  # while it keeps refusing, a caller hears it at once
        assert time.monotonic() - began < 1.5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _write(engine, "a")  # the same engine, no restart
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        began = time.monotonic()
        _refused(engine, "b")  # a write got through: the full busy timeout again
        assert time.monotonic() - began >= 1.9
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.postgres
def test_postgres_user_whose_writes_are_revoked_then_granted(postgres_databases, table_sql):
    url = postgres_databases()
    admin = make_engine(url)
    role = f"qsched_writer_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.execute(text(table_sql))
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT SELECT ON control_kv TO {role}"))
    user = make_engine(make_url(url).set(username=role, password=None).render_as_string(hide_password=False))
    try:
        _named(_refused(user, "a"))  # 42501 insufficient_privilege
        with admin.begin() as conn:
            conn.execute(text(f"GRANT INSERT ON control_kv TO {role}"))
        _write(user, "a")
        with admin.begin() as conn:  # a read-only session (a standby, default_transaction_read_only)
            conn.execute(text(f"ALTER ROLE {role} SET default_transaction_read_only = on"))
        user.dispose()
        _named(_refused(user, "b"))  # 25006 read_only_sql_transaction
    finally:
        user.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_other_errors_are_not_named():
    assert _storage_error(ValueError("bad")) is None
    assert not is_storage_refusing(RuntimeError("no such table: jobs"))
