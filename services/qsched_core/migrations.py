"""Alembic, configured in code (no alembic.ini), for every service that keeps a database.

A service keeps its scripts in a `migrations` package (shipped with the
distribution) whose env.py calls `run_env(metadata)`, and exposes
`Migrations(scripts_dir, version_table)` as its `db` module's API. Each service
records its revision in its own version table, so several can share one
PostgreSQL database.

Any number of processes may migrate one database at the same moment (replicas, a compose file
starting everything): on PostgreSQL each upgrade or downgrade holds a session advisory lock
keyed by its version table, so they run one after another and the later ones find nothing to
do; on SQLite every transaction begins IMMEDIATE (qsched_core.sql), which serializes them."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from qsched_core.sql import make_engine, read_only

DEFAULT_VERSION_TABLE = "alembic_version"


class Migrations:
    def __init__(self, scripts_dir: Path, version_table: str = DEFAULT_VERSION_TABLE):
        self.scripts_dir = scripts_dir
        self.version_table = version_table

    def config(self, connection: Connection | None = None) -> Config:
        """An Alembic config for these scripts, optionally bound to an open connection."""
        cfg = Config()
        # Config options go through ConfigParser interpolation: escape '%'.
        cfg.set_main_option("script_location", str(self.scripts_dir).replace("%", "%%"))
        cfg.set_main_option("path_separator", "os")
        cfg.attributes["version_table"] = self.version_table
        if connection is not None:
            cfg.attributes["connection"] = connection
        return cfg

    def upgrade(self, url: str, revision: str = "head") -> None:
        """Migrate the database at `url` up to `revision` (creating the schema in an empty database)."""
        with self._locked(url) as connection:
            command.upgrade(self.config(connection), revision)

    def downgrade(self, url: str, revision: str = "base") -> None:
        """Migrate the database at `url` down to `revision` ("base" drops every table)."""
        with self._locked(url) as connection:
            command.downgrade(self.config(connection), revision)

    @contextlib.contextmanager
    def _locked(self, url: str) -> Iterator[Connection]:
        """A connection holding this version table's migration lock (PostgreSQL) until the end."""
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                if connection.dialect.name != "postgresql":
                    yield connection
                    return
                key = self._lock_key()
                # Session-level: it outlives the migrations' own transactions; committed at once so
                # alembic begins its transaction on a connection that is not in one.
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                connection.commit()
                try:
                    yield connection
                finally:
                    connection.rollback()  # whatever a failed migration left open
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
        finally:
            engine.dispose()

    def _lock_key(self) -> int:
        """A signed 64-bit advisory-lock key from the version table's name (stable across processes)."""
        digest = hashlib.sha256(f"qsched-migrations:{self.version_table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def current(self, url: str) -> str | None:
        """The revision the database is at, or None for an unmigrated database."""
        engine = make_engine(url)
        try:
            with read_only(engine).connect() as connection:
                opts = {"version_table": self.version_table}
                return MigrationContext.configure(connection, opts=opts).get_current_revision()
        finally:
            engine.dispose()

    def head(self) -> str:
        """The newest revision the installed code knows."""
        revision = ScriptDirectory.from_config(self.config()).get_current_head()
        if revision is None:
            raise RuntimeError(f"no migrations found in {self.scripts_dir}")
        return revision


def run_env(metadata: MetaData) -> None:
    """The body of a service's migrations/env.py. The caller passes an open
    connection in `config.attributes["connection"]`, or a URL in
    `config.attributes["url"]` (or the `sqlalchemy.url` main option)."""
    config = context.config
    version_table = config.attributes.get("version_table", DEFAULT_VERSION_TABLE)

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            # The SQLite engine emits BEGIN itself, so DDL is transactional there too:
            # a failed migration leaves the schema as it was.
            transactional_ddl=True,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table=version_table, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    if not url:
        raise RuntimeError("no database: set config.attributes['connection'] or ['url']")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            run(connection)
    finally:
        engine.dispose()
