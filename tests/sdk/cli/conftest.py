"""Fixtures for the metriq-gym CLI verbs.

The services (a real provider gateway, and either the real scheduler or a JobService double backed by
the gateway) run on an event loop in a background thread that lives for the whole module, so each
test calls `qsched.cli.main.main` directly. qiskit and the provider SDKs are imported here, in the main
thread, at import time: qiskit 2.5+ crashes when its first import happens in a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import qiskit
import qiskit.qasm2
import qiskit.qasm3  # noqa: F401
import qiskit_aer  # noqa: F401

from qsched_gateway.server import import_sdks_in_main_thread

import_sdks_in_main_thread()

WIT = {"benchmark_name": "WIT", "num_qubits": 7, "shots": 500}
QML = {"benchmark_name": "QML Kernel", "num_qubits": 3, "shots": 300}
SUITE = {
    "name": "small_suite",
    "description": "two quick benchmarks",
    "benchmarks": [
        {"name": "wit", "config": WIT},
        {"name": "qml", "config": QML},
    ],
}


class LoopThread:
    """An asyncio loop in a daemon thread; `run(coro)` runs a coroutine on it and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cli-bench-services", daemon=True)
        self.thread.start()
        self._stack = contextlib.AsyncExitStack()

    def run(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def enter(self, manager):
        return self.run(self._stack.enter_async_context(manager))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._stack.aclose(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(scope="module")
def gateway_address(services, tmp_path_factory) -> str:
    from tests.support.stack import running_service

    return services.enter(running_service("gateway", tmp_path_factory.mktemp("gateway")))


@pytest.fixture(scope="module")
def fake_scheduler(services, gateway_address):
    """(FakeJobService, address): the JobService double in front of the real gateway."""
    from tests.sdk.cli.fake_scheduler import start_fake_scheduler

    @contextlib.asynccontextmanager
    async def started():
        server, service, address = await start_fake_scheduler(gateway_address)
        try:
            yield service, address
        finally:
            await server.stop(0)
            await service.channel.close()

    return services.enter(started())


def make_runner(address: str, capsys) -> Callable[..., tuple[int, str, str]]:
    from qsched.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*args, "--address", address])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def qsched(fake_scheduler, capsys, monkeypatch, tmp_path):
    """Run `qsched ...` against the double (as user alice, in tmp_path)."""
    monkeypatch.setenv("QSCHED_USER", "alice")
    monkeypatch.chdir(tmp_path)
    return make_runner(fake_scheduler[1], capsys)


@pytest.fixture
def config_files(tmp_path) -> dict[str, Path]:
    files = {}
    for name, document in (("wit", WIT), ("qml", QML), ("suite", SUITE)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        files[name] = path
    return files


def job_id_of(out: str) -> str:
    first = out.split()[0].rstrip(":")
    assert first.startswith("JOB-"), out
    return first


def wait_done(address: str, job_id: str, timeout: float = 60.0) -> None:
    """Block until the job is terminal (follows WatchJob: no sleeps)."""
    from qsched.client import JobClient

    with JobClient(address) as client:
        client.wait_for_completion(job_id, timeout=timeout, verbose=False)
