"""Shared fixtures (a pytest plugin, loaded by tests/conftest.py): real services on
ephemeral ports, built as `qsched serve` builds them, the test doubles of the executor and
the gateway, which speak the real protocols, and a real `qsched up` stack (`qsched_up`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_core.principal import Role
from qsched_core.tracing import configure_tracing
from qsched_runtime.server import start_server
from tests.support import processes
from tests.support.fake_executor import FakeExecutor, start_fake_executor
from tests.support.fake_gateway import FakeGateway, start_fake_gateway
from tests.support.identity import SEED_PERSON as PERSON
from tests.support.identity import TestIdentity, authed_channel, up_environment

_EXPORTER = configure_tracing("tests", "memory")


@pytest.fixture
def spans():
    """Spans finished by every server in this process (in-memory exporter)."""
    _EXPORTER.clear()
    return _EXPORTER


@pytest.fixture
async def fake_executor():
    fake = FakeExecutor()
    server = await start_fake_executor(fake)
    yield fake, f"127.0.0.1:{server.port}"
    await server.stop(0)


@contextlib.asynccontextmanager
async def running_service(
    service: str, data_dir: Path, peers: dict[str, str] | None = None, **config: object
):
    """One service built as `qsched serve` builds it, on an ephemeral port; `peers`
    gives the addresses of the services it talks to."""
    import importlib

    module = importlib.import_module(f"qsched_{service}.server")
    endpoints = Endpoints(**{**(peers or {}), service: "127.0.0.1:0"})
    cfg = ServiceConfig(service=service, endpoints=endpoints, data_dir=data_dir, **config)
    handle = await module.build(cfg)
    server = await start_server(cfg.listen, handle.registrations, handle.security)
    await handle.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(0)
        await handle.stop()


@pytest.fixture
async def fake_gateway():
    fake = FakeGateway()
    server = await start_fake_gateway(fake)
    yield fake, f"127.0.0.1:{server.port}"
    await server.stop(0)


@pytest.fixture
async def scheduler(tmp_path, fake_executor, fake_gateway):
    """(JobService stub, fake executor, address) with the SQLite store in tmp_path and the
    test doubles of the executor (device "qick") and the gateway (device "fake:qpu")."""
    fake, executor_address = fake_executor
    peers = {"gateway": fake_gateway[1]}
    service = running_service(
        "scheduler", tmp_path, peers, lab_devices={"qick": executor_address}, pin_configs=False
    )
    async with service as address, authed_channel(address) as channel:
        yield jobs_pb2_grpc.JobServiceStub(channel), fake, address


# -- a real `qsched up` ------------------------------------------------------------------------------------
@dataclass
class UpStack:
    """A running `qsched up`: the scheduler's address, and tokens of people on it."""

    address: str
    identity: TestIdentity | None = None  # None: a stack named by QSCHED_SDK_TEST_ADDRESS
    web_url: str = ""  # the web view up started ("" for a stack named by QSCHED_SDK_TEST_ADDRESS)

    def token_for(self, name: str) -> str:
        """A token of `name` (an operator, so it may cancel the other people's test jobs)."""
        if self.identity is None:
            if name == PERSON and os.environ.get("QSCHED_TOKEN"):
                return os.environ["QSCHED_TOKEN"]
            pytest.skip(f"no token of {name} for the stack at QSCHED_SDK_TEST_ADDRESS")
        return self.identity.token_for(name, (Role.OPERATOR,))


@dataclass
class UpProcesses:
    """A `qsched up` this module started: every service's address, the web view's URL and the
    installation's identity."""

    addresses: dict[str, str]
    identity: TestIdentity
    data_dir: Path
    log: Path
    web_url: str = ""


@contextlib.contextmanager
def up_stack(tmp: Path, database_url: str = "") -> Iterator[UpProcesses]:
    """Start `qsched up` in `tmp` (four processes and the web view on free ports, the simulated
    board, a data directory and identity database of its own) and stop it on exit. With
    `database_url`, every service keeps its state in that database (`up --database-url`)."""
    from qsched_core.config import SERVICES
    from qsched_core.sql import make_engine
    from qsched_identity.db import sqlite_url_for
    from qsched_identity.store import IdentityStore

    addresses = {s: f"127.0.0.1:{processes.free_port()}" for s in SERVICES}
    flags = [arg for s in SERVICES for arg in (f"--{s}-address", addresses[s])]
    web = f"127.0.0.1:{processes.free_port()}"
    flags += ["--web-address", web]
    log = tmp / "up.log"
    (tmp / "data").mkdir()  # up opens its identity database there before anything creates it
    wanted = up_environment(tmp / "config")  # up provisions its own users, not the session's
    with pytest.MonkeyPatch.context() as env:  # processes.start passes on this process's environment
        for name in set(os.environ) - set(wanted):
            env.delenv(name)
        for name, value in wanted.items():
            env.setenv(name, value)
        if database_url:
            flags += ["--database-url", database_url]
        up = processes.start(["up", *flags, "--data-dir", str(tmp / "data")], log)
    store = None
    try:
        # every service SERVING and the main hardware_config seeded
        processes.wait_for_line(log, "qsched is up", up)
        url = database_url or sqlite_url_for(tmp / "data")
        store = IdentityStore(make_engine(url))
        yield UpProcesses(addresses, TestIdentity(url, tmp, store), tmp / "data", log, f"http://{web}")
    finally:
        processes.stop(up)
        if store is not None:
            store.close()


@pytest.fixture(scope="session")
def qsched_up(tmp_path_factory) -> Iterator[UpStack]:
    """A real `qsched up` stack (one for the session, started by the first test that asks, stopped
    at the end). QSCHED_SDK_TEST_ADDRESS names an already running stack instead (nothing is
    started then; $QSCHED_TOKEN is the caller's)."""
    given = os.environ.get("QSCHED_SDK_TEST_ADDRESS")
    if given:
        yield UpStack(given)
        return
    with up_stack(tmp_path_factory.mktemp("qsched-up")) as up:
        yield UpStack(up.addresses["scheduler"], up.identity, up.web_url)


@pytest.fixture
def on_stack(qsched_up, monkeypatch, tmp_path) -> UpStack:
    """The `qsched up` stack as the SDK finds it by default: QSCHED_ADDRESS, the seed examples'
    person's token, and a data cache of this test's own."""
    monkeypatch.setenv("QSCHED_ADDRESS", qsched_up.address)
    monkeypatch.setenv("QSCHED_TOKEN", qsched_up.token_for(PERSON))
    monkeypatch.setenv("QSCHED_CACHE_DIR", str(tmp_path / "cache"))
    return qsched_up
