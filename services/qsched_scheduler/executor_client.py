"""The hardware executor, reached over gRPC (qsched.executor.v1): the run queue as one
long-lived bidi stream, plus validation and data files. Messages are converted by
qsched_runtime.execution_wire (the one proto <-> domain mapping of the run contract)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence

import grpc

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched_core.execution import DataChunk, PinnedRevision, QueueCommand, QueueEvent, Validated
from qsched_core.payloads import LabExperiment
from qsched_runtime import execution_wire as wire
from qsched_runtime.errors import peer_error
from qsched_runtime.security import PeerCredentials
from qsched_scheduler.executor_port import ExecutorRejected, ExecutorUnavailable, RunNotFound

VALIDATE_TIMEOUT_S = 5.0
QUEUE_CHANNEL_OPTIONS = (
    # A restarted executor is found again within a couple of seconds, not gRPC's default minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)

# NOT_FOUND: the executor does not know the run or file.
_peer_error = functools.partial(
    peer_error,
    unavailable=ExecutorUnavailable,
    rejected=ExecutorRejected,
    by_code={grpc.StatusCode.NOT_FOUND: RunNotFound},
)


class _GrpcQueue:
    """One RunQueue call as a QueueTransport. Any end of the stream (the executor restarted,
    another scheduler opened its queue: ABORTED QUEUE_REOPENED) is ExecutorUnavailable."""

    def __init__(self, call: grpc.aio.StreamStreamCall):
        self._call = call

    async def send(self, command: QueueCommand) -> None:
        try:
            await self._call.write(wire.command_to_pb(command))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError, asyncio.InvalidStateError) as error:
            # InvalidStateError: the call already ended (an executor whose host refuses connections)
            raise ExecutorUnavailable(f"the run queue stream is gone: {error}") from error

    async def receive(self) -> QueueEvent:
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise ExecutorUnavailable(
                f"the run queue stream ended: {error.code().name} {error.details()}"
            ) from error
        if message is grpc.aio.EOF:
            raise ExecutorUnavailable("the executor closed the run queue stream")
        return wire.event_from_pb(message)

    async def close(self) -> None:
        self._call.cancel()


class GrpcLabExecutor:
    def __init__(self, address: str, credentials: PeerCredentials | None = None):
        self.address = address
        self._channel = (credentials or PeerCredentials()).channel(address, QUEUE_CHANNEL_OPTIONS)
        self._stub = pb_grpc.HardwareExecutorServiceStub(self._channel)

    async def open_queue(self) -> _GrpcQueue:
        try:
            call = self._stub.RunQueue()
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        return _GrpcQueue(call)

    async def validate(self, experiment: LabExperiment, configs: Sequence[PinnedRevision] = ()) -> Validated:
        try:
            response = await self._stub.ValidateExperiment(
                wire.validate_request_to_pb(experiment, configs), timeout=VALIDATE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        return wire.validate_response_from_pb(response, experiment.experiment_revision)

    async def fetch_data(self, task_id: str, name: str = "") -> AsyncIterator[DataChunk]:
        call = self._stub.FetchData(pb.FetchDataRequest(task_id=task_id, name=name))
        try:
            async for message in call:
                yield wire.chunk_from_pb(message)
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close()
