"""The executor on real gRPC servers (ephemeral ports) with a simulated board whose rounds a
test can hold (no sleeps: the board thread waits on an event the test sets)."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import pytest

from qsched.api.executor.v1 import executor_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_runtime.server import start_server
from tests.support.identity import authed_channel

HARDWARE_DIR = Path(__file__).resolve().parents[2] / "hardware"
if str(HARDWARE_DIR) not in sys.path:  # the example plug-in package (not installed until `make install`)
    sys.path.insert(0, str(HARDWARE_DIR))

WAIT_S = 30


class RoundGate:
    """Lets the first `free_rounds` rounds through, then holds each round until released."""

    def __init__(self, free_rounds: int = 0):
        self.free = free_rounds
        self.rounds = 0
        self.held = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> None:
        self.rounds += 1
        if self.rounds <= self.free:
            return
        self.held.set()
        if not self.release.wait(WAIT_S):
            raise TimeoutError("round gate never released")

    def open(self) -> None:
        self.free = 10**9
        self.release.set()


@contextlib.asynccontextmanager
async def executor_service(data_dir: Path, gate: RoundGate | None = None, **config: object):
    from qsched_executor.server import build
    from qsched_hardware.board import open_board

    board = open_board("sim")
    if gate is not None:
        board.soc.on_round = gate
    endpoints = Endpoints(executor="127.0.0.1:0", configs=str(config.pop("configs_address", "127.0.0.1:9")))
    cfg = ServiceConfig(service="executor", endpoints=endpoints, data_dir=data_dir, **config)
    handle = await build(cfg, board=board)
    server = await start_server(cfg.listen, handle.registrations)
    channel = authed_channel(f"127.0.0.1:{server.port}")
    try:
        yield executor_pb2_grpc.HardwareExecutorServiceStub(channel), handle.executor, board
    finally:
        if gate is not None:
            gate.open()
        await channel.close()
        await server.stop(0)
        await handle.stop()


@pytest.fixture
async def executor(tmp_path):
    async with executor_service(tmp_path) as service:
        yield service


@pytest.fixture
def gate():
    return RoundGate()
