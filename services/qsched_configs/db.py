"""Schema migrations of the config database, run in code (no alembic.ini).

    from qsched_configs import db
    db.upgrade("sqlite:////var/lib/qsched/configs.db")

The scripts live in the qsched_configs.migrations package, so they ship with the
installed distribution. Alembic records the revision in its own table,
`alembic_version_configs`, so this database may share a PostgreSQL database with
the scheduler's (whose tables and version table have other names)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from qsched_runtime.sql import make_engine, read_only

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
VERSION_TABLE = "alembic_version_configs"
SQLITE_FILE_NAME = "configs.db"


def sqlite_url_for(data_dir: Path) -> str:
    """The embedded config database of a data directory."""
    return f"sqlite:///{(Path(data_dir) / SQLITE_FILE_NAME).as_posix()}"


def config(connection: Connection | None = None) -> Config:
    """An Alembic config for the config service's migrations, optionally bound to an open connection."""
    cfg = Config()
    # Config options go through ConfigParser interpolation: escape '%'.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision` (creating the schema in an empty database)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            command.upgrade(config(connection), revision)
    finally:
        engine.dispose()


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at `url` down to `revision` ("base" drops every table)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            command.downgrade(config(connection), revision)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    """The revision the database is at, or None for an unmigrated database."""
    engine = make_engine(url)
    try:
        with read_only(engine).connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()


def head() -> str:
    """The newest revision the installed code knows."""
    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision
