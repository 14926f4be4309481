"""SQL plumbing shared by the services that keep state (scheduler, config versioning):
engines for an embedded SQLite file or a PostgreSQL server, and column types.

SQLite is set up so several processes can share one file safely: WAL (readers
never block the writer), synchronous=FULL (a commit is on disk before the call
returns), a 10 s busy timeout, foreign keys on, and SQLAlchemy (not the sqlite3
module) emitting BEGIN: `BEGIN IMMEDIATE` for every transaction, which takes the
write lock up front, so two writers serialize instead of failing on a lock upgrade.
Read-only work can opt into a plain deferred `BEGIN` with `read_only(engine)`.

Timestamps are stored as UTC and always come back timezone-aware; JSON columns
are plain text so SQLite and PostgreSQL store them the same way."""

from __future__ import annotations

import errno
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Dialect,
    Engine,
    Integer,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url

from qsched_core.errors import ResourceExhausted, Unavailable

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT that is still SQLite's INTEGER rowid alias (so it autoincrements there).
BigId = BigInteger().with_variant(Integer(), "sqlite")


BUSY_TIMEOUT_MS = 10_000
# Once a write was refused (the database stayed locked past BUSY_TIMEOUT_MS), the next ones wait
# only this long until one gets through: each caller hears STORAGE_UNAVAILABLE in about a second,
# not 10 s more for every write queued before it on the store thread.
REFUSING_BUSY_TIMEOUT_MS = 1_000

_REFUSING: dict[str, list[bool]] = {}  # by SQLite database: see _sqlite_engine

# PostgreSQL ends a session that sits inside a transaction this long without sending anything: a
# process frozen between two statements (SIGSTOP, a VM paused, a GC stall gone wrong) would hold
# its row locks, and so block every other replica's writes to those rows, for as long as its
# connection lives. Our transactions send their statements back to back; none waits this long.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 5_000
IDLE_SETTING = "idle_in_transaction_session_timeout"

# Execution option read by the SQLite "begin" hook; set by `read_only`.
_BEGIN_OPTION = "qsched_sqlite_begin"


def sqlite_url(path: Path) -> str:
    """The URL of an embedded SQLite database file."""
    return f"sqlite:///{Path(path).as_posix()}"


def make_engine(url: str) -> Engine:
    """An engine for a `sqlite:///path` or `postgresql://` URL (PostgreSQL always uses psycopg 3)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_pre_ping=True,
            connect_args={"options": f"-c {IDLE_SETTING}={IDLE_IN_TRANSACTION_TIMEOUT_MS}"},
        )
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed)


def read_only(engine: Engine) -> Engine:
    """The same engine, but SQLite transactions begin deferred (no write lock): for reads only."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})


def _is_file_db(url: URL) -> bool:
    return bool(url.database) and url.database != ":memory:" and url.query.get("mode") != "memory"


def _sqlite_engine(url: URL) -> Engine:
    file_db = _is_file_db(url)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (the sqlite3 module would defer it to the first write).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if file_db:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    # Whether the last write transaction on this database could not begin (it is locked): shared
    # by every engine of the same file in this process (a service may have several).
    refusing = _REFUSING.setdefault(str(url.database), [False])

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Straight to the sqlite3 connection: SQLAlchemy's statement machinery costs ~0.1 ms per
        # BEGIN, paid by every transaction (these statements return nothing and bind nothing).
        driver = connection.connection.driver_connection
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        if mode == "DEFERRED":
            driver.execute("BEGIN")
            return
        info = connection.connection.info  # per DBAPI connection
        busy = REFUSING_BUSY_TIMEOUT_MS if refusing[0] else BUSY_TIMEOUT_MS
        if info.get("busy_timeout_ms", BUSY_TIMEOUT_MS) != busy:
            driver.execute(f"PRAGMA busy_timeout = {busy}")
            info["busy_timeout_ms"] = busy
        try:
            driver.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            refusing[0] = is_storage_refusing(exc)
            raise
        refusing[0] = False

    return engine


class UtcDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that stores UTC and returns aware UTC datetimes
    (SQLite keeps no offset: it would return naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # the scheduler's clock is UTC: a naive value is UTC already
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JsonText(TypeDecorator[Any]):
    """JSON-able data stored as text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


# -- a full disk, named -----------------------------------------------------------------------------
class StorageFull(ResourceExhausted):
    """The database could not write: its disk is full. Nothing was changed; the caller may retry
    once space is freed (the service recovers by itself)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("STORAGE_FULL", "the server's disk is full: nothing was written; try again later")
        self.detail = detail


_FULL_MESSAGES = ("database or disk is full", "no space left on device", "disk full", "could not extend file")


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc` (a DBAPI error wrapped by SQLAlchemy, or an OSError) says the disk is full:
    SQLite's SQLITE_FULL, PostgreSQL's SQLSTATE 53100 (disk_full), or ENOSPC."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if getattr(exc, "sqlstate", None) == "53100" or getattr(exc, "pgcode", None) == "53100":
            return True
        if any(text in str(exc).lower() for text in _FULL_MESSAGES):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


# -- a database that refuses writes, named -------------------------------------------------------------
class StorageUnavailable(Unavailable):
    """The database refused a write for now: locked by another connection past the busy
    timeout, read-only, or the service's database user may not write. Nothing was changed; the
    caller may retry (the service recovers by itself once writes are allowed again)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "STORAGE_UNAVAILABLE",
            "the server's database refuses writes for now: nothing was written; try again later",
        )
        self.detail = detail


_REFUSED_MESSAGES = (
    "database is locked",  # SQLITE_BUSY past the busy timeout
    "attempt to write a readonly database",  # SQLITE_READONLY
    "permission denied",  # PostgreSQL 42501 insufficient_privilege
    "read-only transaction",  # PostgreSQL 25006 (a hot standby, default_transaction_read_only)
)
_REFUSED_SQLSTATES = ("42501", "25006", "55P03")  # insufficient privilege, read-only, lock not available


def is_storage_refusing(exc: BaseException) -> bool:
    """Whether `exc` says the database refuses writes for now (see StorageUnavailable)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code in _REFUSED_SQLSTATES:
            return True
        if any(text in str(exc).lower() for text in _REFUSED_MESSAGES):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False
