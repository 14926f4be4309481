"""Alembic environment of the config database.

Configured in code by qsched_configs.db (no alembic.ini): the caller passes an
open connection in `config.attributes["connection"]`, or a URL in
`config.attributes["url"]` (or the `sqlalchemy.url` main option). The version is
kept in `alembic_version_configs`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from qsched_configs.db import VERSION_TABLE
from qsched_configs.store.models import metadata
from qsched_runtime.sql import make_engine

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: set config.attributes['connection'] or ['url']")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # The SQLite engine emits BEGIN itself, so DDL is transactional there too:
        # a failed migration leaves the schema as it was.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
