"""The executor on real gRPC servers (ephemeral ports) with a simulated board whose rounds a
test can hold (no sleeps: the board thread waits on an event the test sets), and the
scheduler's end of the run queue (`RunQueueClient`), speaking the contract's domain types
through `qsched_runtime.execution_wire` as the scheduler does."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
import threading
from pathlib import Path

import grpc
import pytest

from qsched.api.executor.v1 import executor_pb2_grpc
from qsched_core.config import Endpoints, ServiceConfig
from qsched_core.execution import (
    Cancelling,
    CancelRuns,
    Enqueued,
    EnqueueRuns,
    ExecutionRequest,
    ExecutionUpdate,
    OpenQueue,
    PinnedRevision,
    QueueOpened,
    RunCursor,
    UpdateBatch,
    Withdrawn,
    WithdrawRuns,
)
from qsched_core.payloads import LabExperiment
from qsched_runtime import execution_wire as wire
from qsched_runtime.server import start_server
from tests.support.identity import authed_channel
from tests.support.waiting import eventually

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
    config.setdefault("data_writers", 0)  # a writer thread; tests of the writer processes ask for them
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


RABI = {"expts": 21, "reps": 50, "stop": 0.9}


def run_request(
    task_id: str,
    job_id: str = "JOB-20260113-00001",
    cls: str = "AmplitudeRabiExperiment",
    module: str = "qsched_hardware.experiments",
    expt: dict | None = None,
    configs: tuple[PinnedRevision, ...] = (),
    trace_parent: str = "",
) -> ExecutionRequest:
    experiment = LabExperiment(cls, module, json.dumps(RABI if expt is None else expt))
    return ExecutionRequest(job_id, task_id, "alice", experiment, configs, trace_parent)


def noop(task_id: str, job_id: str = "JOB-20260113-00001", **expt: object) -> ExecutionRequest:
    return run_request(task_id, job_id, cls="NoOpExperiment", expt=dict(expt))


class RunQueueClient:
    """The scheduler's end of one RunQueue stream: commands in, events collected as they come."""

    def __init__(self, stub: executor_pb2_grpc.HardwareExecutorServiceStub):
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._ids = itertools.count(1)
        self.call = stub.RunQueue(self._requests())
        self.opened: QueueOpened | None = None
        self.batches: list[UpdateBatch] = []
        self.answers: dict[int, Enqueued | Withdrawn | Cancelling] = {}
        self.order: list[str] = []  # event kinds in arrival order ("updates", "enqueued", ...)
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = False
        self._reader = asyncio.create_task(self._read())

    async def _requests(self):
        while (message := await self._outbox.get()) is not None:
            yield message

    async def _read(self) -> None:
        try:
            async for message in self.call:
                event = wire.event_from_pb(message)
                self.order.append(message.WhichOneof("event"))
                if isinstance(event, QueueOpened):
                    self.opened = event
                elif isinstance(event, UpdateBatch):
                    self.batches.append(event)
                else:
                    self.answers[event.request_id] = event
        except grpc.aio.AioRpcError as error:
            self.error = error
        finally:
            self.ended = True

    async def _answer(self, request_id: int):
        return await eventually(
            lambda: self.answers.get(request_id), timeout=WAIT_S, what=f"answer {request_id}"
        )

    async def open(self, *cursors: RunCursor) -> QueueOpened:
        await self._outbox.put(wire.command_to_pb(OpenQueue(tuple(cursors))))
        return await eventually(lambda: self.opened, timeout=WAIT_S, what="RunQueueOpened")

    async def enqueue(self, *runs: ExecutionRequest, after: str = "") -> Enqueued:
        request_id = next(self._ids)
        await self._outbox.put(wire.command_to_pb(EnqueueRuns(request_id, after, runs)))
        return await self._answer(request_id)

    async def withdraw(self, *task_ids: str) -> Withdrawn:
        request_id = next(self._ids)
        await self._outbox.put(wire.command_to_pb(WithdrawRuns(request_id, task_ids)))
        return await self._answer(request_id)

    async def cancel(self, *task_ids: str, reason: str = "") -> Cancelling:
        request_id = next(self._ids)
        await self._outbox.put(wire.command_to_pb(CancelRuns(request_id, task_ids, reason)))
        return await self._answer(request_id)

    async def preempt(self, *task_ids: str, reason: str = "") -> Cancelling:
        """CancelRuns with `preempt`: the run on the board yields between rounds."""
        request_id = next(self._ids)
        await self._outbox.put(wire.command_to_pb(CancelRuns(request_id, task_ids, reason, preempt=True)))
        return await self._answer(request_id)

    def updates(self, task_id: str) -> list[ExecutionUpdate]:
        return [u for batch in self.batches for u in batch.updates if u.task_id == task_id]

    def kinds(self, task_id: str) -> list[str]:
        return [u.kind.value for u in self.updates(task_id)]

    async def ended_run(self, task_id: str) -> ExecutionUpdate:
        """The run's terminal update, once it has come."""

        def last() -> ExecutionUpdate | None:
            seen = self.updates(task_id)
            return seen[-1] if seen and seen[-1].terminal else None

        return await eventually(last, timeout=WAIT_S, what=f"the end of run {task_id}")

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def run_queue(stub, *cursors: RunCursor):
    client = RunQueueClient(stub)
    await client.open(*cursors)
    try:
        yield client
    finally:
        await client.close()
