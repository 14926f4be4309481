"""qsched.executor.v1.HardwareExecutorService: translates protos to HardwareExecutor calls and
domain results and errors back (google.rpc.Status with ErrorInfo). The messages are converted
by `qsched_runtime.execution_wire` and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched_core.execution import (
    CancelRuns,
    DataChunk,
    EnqueueRuns,
    OpenQueue,
    WatchPartials,
    WithdrawRuns,
)
from qsched_executor.errors import DOMAIN, InvalidRequest
from qsched_executor.executor import HardwareExecutor, QueueSession
from qsched_runtime import execution_wire as wire
from qsched_runtime.errors import translates_errors

CHUNK_BYTES = 1 << 20


@translates_errors(DOMAIN)
class ExecutorServicer(pb_grpc.HardwareExecutorServiceServicer):
    def __init__(self, executor: HardwareExecutor):
        self._executor = executor

    async def RunQueue(
        self, request_iterator: AsyncIterator[pb.RunQueueRequest], context: grpc.aio.ServicerContext
    ):
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        command = wire.command_from_pb(first)
        if not isinstance(command, OpenQueue):
            raise InvalidRequest("QUEUE_NOT_OPEN", "the first RunQueue request must be `open`")
        session = self._executor.open_queue(command)
        reader = asyncio.create_task(self._commands(requests, session))
        try:
            while True:
                # Whatever is pending when the stream can take more goes out together.
                for event in await session.next():
                    yield wire.event_to_pb(event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self._executor.close_queue(session)

    async def _commands(self, requests: AsyncIterator[pb.RunQueueRequest], session: QueueSession) -> None:
        """Each command in turn; its answer goes into the session after the updates it caused."""
        try:
            async for message in requests:
                command = wire.command_from_pb(message)
                if isinstance(command, EnqueueRuns):
                    session.push(await self._executor.enqueue(command))
                elif isinstance(command, WithdrawRuns):
                    session.push(self._executor.withdraw(command))
                elif isinstance(command, CancelRuns):
                    session.push(self._executor.cancel(command))
                elif isinstance(command, WatchPartials):  # no answer
                    self._executor.watch_partials(command)
                else:
                    raise InvalidRequest("QUEUE_ALREADY_OPEN", "`open` comes once, first")
        except (ValueError, InvalidRequest) as exc:
            session.push(exc if isinstance(exc, InvalidRequest) else InvalidRequest("BAD_COMMAND", str(exc)))

    async def WatchRun(self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext):
        async for update in self._executor.watch(request.task_id, request.after_seq):
            yield pb.WatchRunResponse(update=wire.update_to_pb(update))

    async def GetDevice(self, request: pb.GetDeviceRequest, context: grpc.aio.ServicerContext):
        return wire.device_response_to_pb(self._executor.board_info())

    async def ValidateExperiment(
        self, request: pb.ValidateExperimentRequest, context: grpc.aio.ServicerContext
    ):
        experiment, configs = wire.validate_request_from_pb(request)
        return wire.validate_response_to_pb(await self._executor.check(experiment, configs))

    async def FetchData(self, request: pb.FetchDataRequest, context: grpc.aio.ServicerContext):
        path, ref = await self._executor.data_file(request.task_id, request.name)
        total = path.stat().st_size
        offset = 0
        with open(path, "rb") as handle:
            while True:
                chunk = await asyncio.to_thread(handle.read, CHUNK_BYTES)
                if not chunk and offset > 0:
                    break
                first = offset == 0
                yield wire.chunk_to_pb(
                    DataChunk(offset, chunk, total, ref.sha256 if first else "", ref.name if first else "")
                )
                offset += len(chunk)
                if not chunk or offset >= total:
                    break  # all of it (no read just to find the end)
