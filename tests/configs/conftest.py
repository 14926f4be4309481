"""Fixtures of the config service's tests: migrated databases of each backend, the
store on them, and the real service on an ephemeral port (in this event loop, in a
background thread for the synchronous SDK and CLI, or as a subprocess).

PostgreSQL tests use the suite's `postgres_databases` factory: they fail, not skip,
when the server is down."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qsched.api.configs.v1 import configs_pb2_grpc
from qsched_configs import db
from qsched_configs.domain import SEED_TYPES
from qsched_configs.store.sql import SqlConfigStore
from qsched_core.sql import make_engine
from tests.support.identity import authed_channel
from tests.support.stack import running_service

T0 = datetime(2026, 1, 14, 9, 30, tzinfo=UTC)
TABLES = (
    "config_main_changes",
    "config_main_pointers",
    "config_revisions",
    "config_contents",
    "config_id_counters",
)
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]


# -- databases ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def configs_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configs.db migrated to head, to copy (migrating every test's file would be slower)."""
    data_dir = tmp_path_factory.mktemp("configs-template")
    db.upgrade(db.sqlite_url_for(data_dir))
    return data_dir / db.SQLITE_FILE_NAME


def seed_data_dir(template: Path, data_dir: Path) -> Path:
    """A data directory whose configs.db is a copy of the migrated template."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, data_dir / db.SQLITE_FILE_NAME)
    return data_dir


@pytest.fixture
def configs_sqlite_url(configs_sqlite_template: Path, tmp_path: Path) -> str:
    return db.sqlite_url_for(seed_data_dir(configs_sqlite_template, tmp_path / "db"))


@pytest.fixture(scope="session")
def configs_postgres_session_url(postgres_databases: Callable[[], str]) -> str:
    url = postgres_databases()
    db.upgrade(url)
    return url


@pytest.fixture
def configs_postgres_url(configs_postgres_session_url: str) -> Iterator[str]:
    """The session's migrated PostgreSQL database, emptied (ids restart at 1, only the seed types)."""
    import psycopg

    with psycopg.connect(configs_postgres_session_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        conn.execute("DELETE FROM config_types WHERE NOT (name = ANY(%s))", ([t.name for t in SEED_TYPES],))
    yield configs_postgres_session_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest) -> str:
    """A migrated database with nothing but the seed types, of each backend."""
    return request.getfixturevalue(
        "configs_sqlite_url" if request.param == "sqlite" else "configs_postgres_url"
    )


@pytest.fixture
def store(sql_url: str) -> Iterator[SqlConfigStore]:
    store = SqlConfigStore(make_engine(sql_url))
    yield store
    store.close()


# -- the service -------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def configs_service(
    data_dir: Path, template: Path | None = None, **config: object
) -> AsyncIterator[str]:
    """The config service as `qsched serve` builds it; yields its address."""
    if template is not None and "configs_database_url" not in config:
        seed_data_dir(template, data_dir)
    async with running_service("configs", data_dir, **config) as address:
        yield address


@pytest.fixture
async def stub(
    tmp_path: Path, configs_sqlite_template: Path
) -> AsyncIterator[configs_pb2_grpc.ConfigServiceStub]:
    async with (
        configs_service(tmp_path / "data", configs_sqlite_template) as address,
        authed_channel(address, options=CHANNEL_OPTIONS) as channel,
    ):
        yield configs_pb2_grpc.ConfigServiceStub(channel)


@pytest.fixture
def service_thread(tmp_path: Path, configs_sqlite_template: Path) -> Iterator[str]:
    """The service on its own event loop in a background thread (for the synchronous SDK and CLI)."""
    ready = threading.Event()
    state: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        stop = asyncio.Event()
        state["stop"] = stop
        try:
            async with configs_service(tmp_path / "data", configs_sqlite_template) as address:
                state["address"] = address
                ready.set()
                await stop.wait()
        finally:
            ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced by the fixture
            state["error"] = exc
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="configs-service", daemon=True)
    thread.start()
    assert ready.wait(30), "the config service did not start"
    if "address" not in state:
        raise RuntimeError("the config service failed to start") from state.get("error")  # type: ignore[arg-type]
    try:
        yield str(state["address"])
    finally:
        loop.call_soon_threadsafe(state["stop"].set)  # type: ignore[union-attr]
        thread.join(30)
