"""Fixtures shared by the whole suite.

PostgreSQL: tests marked `postgres` run against the local server named by
QSCHED_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres),
each session in databases of its own that are dropped afterwards. They fail, not
skip, when the server is down: CI must run them."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest

# Every test runs authenticated (tests.support.identity); the stack fixtures (real services on
# ephemeral ports, test doubles) serve every test folder.
pytest_plugins = ["tests.support.identity", "tests.support.stack"]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
START_POSTGRES_HINT = (
    "start the local server with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or point QSCHED_TEST_POSTGRES_URL at a server where the user may CREATE DATABASE)"
)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Callable[[], str]]:
    """A factory: each call creates an empty database `qsched_test_<hex>` and returns its URL.
    All of them are dropped at the end of the session."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin_url = os.environ.get("QSCHED_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        problem = ""
    except psycopg.OperationalError as exc:
        problem = str(exc)
    if problem:
        shown = make_url(admin_url).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is not reachable at {shown}: {problem}\n{START_POSTGRES_HINT}", pytrace=False
        )
    created: list[str] = []

    def create() -> str:
        name = f"qsched_test_{secrets.token_hex(6)}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        for name in created:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """The URL of a fresh, empty database for this test session."""
    return postgres_databases()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'empty.db').as_posix()}"
    make_database: Callable[[], str] = request.getfixturevalue("postgres_databases")
    return make_database()
