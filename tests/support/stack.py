"""Shared fixtures (a pytest plugin, loaded by tests/conftest.py): real services on
ephemeral ports, built as `qsched serve` builds them, and the test doubles of the
executor and the gateway, which speak the real protocols."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_core.tracing import configure_tracing
from qsched_runtime.server import start_server
from tests.support.fake_executor import FakeExecutor, start_fake_executor
from tests.support.fake_gateway import FakeGateway, start_fake_gateway
from tests.support.identity import authed_channel

_EXPORTER = configure_tracing("tests", "memory")


@pytest.fixture
def spans():
    """Spans finished by every server in this process (in-memory exporter)."""
    _EXPORTER.clear()
    return _EXPORTER


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
