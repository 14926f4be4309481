"""The hardware executor, reached over gRPC (qsched.executor.v1)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import grpc

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched_runtime.errors import peer_error
from qsched_runtime.security import PeerCredentials
from qsched_scheduler.executor_port import (
    DataChunk,
    ExecRequest,
    ExecUpdate,
    ExecutorRejected,
    ExecutorUnavailable,
    RunNotFound,
    Violation,
)

VALIDATE_TIMEOUT_S = 5.0

# NOT_FOUND: the executor does not know the run (it restarted); the dispatcher treats that apart.
_peer_error = functools.partial(
    peer_error,
    unavailable=ExecutorUnavailable,
    rejected=ExecutorRejected,
    by_code={grpc.StatusCode.NOT_FOUND: RunNotFound},
)


def _experiment(request: ExecRequest) -> pb.Experiment:
    return pb.Experiment(
        experiment_class=request.experiment_class,
        experiment_module=request.experiment_module,
        expt_config_json=request.expt_config_json,
    )


def _from_proto(update: pb.ExecutionUpdate) -> ExecUpdate:
    which = update.WhichOneof("update")
    if which == "progress":
        p = update.progress
        return ExecUpdate(
            "progress",
            update.seq,
            fraction=p.fraction,
            rounds_done=p.rounds_done,
            rounds_total=p.rounds_total,
        )
    if which == "result":
        r = update.result
        return ExecUpdate("result", update.seq, 1.0, data_file_path=r.data_file_path, summary=dict(r.summary))
    if which == "error":
        return ExecUpdate("error", update.seq, reason=update.error.reason, message=update.error.message)
    if which == "cancelled":
        return ExecUpdate("cancelled", update.seq, reason="CANCELLED", message=update.cancelled.reason)
    if which in ("accepted", "started"):
        return ExecUpdate(which, update.seq)
    raise ExecutorRejected("UNKNOWN_UPDATE", f"executor sent an update of unknown kind {which!r}")


class GrpcLabExecutor:
    def __init__(self, address: str, credentials: PeerCredentials | None = None):
        self.address = address
        self._channel = (credentials or PeerCredentials()).channel(address)
        self._stub = pb_grpc.HardwareExecutorServiceStub(self._channel)

    async def _stream(self, call: grpc.aio.UnaryStreamCall) -> AsyncIterator[ExecUpdate]:
        try:
            async for message in call:
                yield _from_proto(message.update)
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        finally:
            call.cancel()

    def execute(self, request: ExecRequest) -> AsyncIterator[ExecUpdate]:
        message = pb.ExecuteRequest(
            job_id=request.job_id,
            task_id=request.task_id,
            owner=request.owner,
            experiment=_experiment(request),
            configs=[pb.PinnedConfig(config_type=t, revision_id=r, sha256=s) for t, r, s in request.configs],
            after_task_id=request.after_task_id,
        )
        return self._stream(self._stub.Execute(message))

    async def validate(self, request: ExecRequest) -> list[Violation]:
        try:
            response = await self._stub.ValidateExperiment(
                pb.ValidateExperimentRequest(experiment=_experiment(request)), timeout=VALIDATE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        return [Violation(v.field, v.description) for v in response.violations]

    async def pipelining(self) -> bool:
        """Whether the executor takes runs ahead of time (ExecuteRequest.after_task_id)."""
        try:
            response = await self._stub.GetDevice(pb.GetDeviceRequest(), timeout=VALIDATE_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        return response.device.pipelined_dispatch

    def attach(self, task_id: str, after_seq: int) -> AsyncIterator[ExecUpdate]:
        return self._stream(self._stub.WatchRun(pb.WatchRunRequest(task_id=task_id, after_seq=after_seq)))

    async def fetch_data(self, task_id: str) -> AsyncIterator[DataChunk]:
        call = self._stub.FetchData(pb.FetchDataRequest(task_id=task_id))
        try:
            async for message in call:
                yield DataChunk(message.offset, message.chunk, message.total_size, message.sha256)
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        finally:
            call.cancel()

    async def cancel(self, task_id: str, reason: str, only_if_waiting: bool = False) -> bool:
        try:
            request = pb.CancelRunRequest(task_id=task_id, reason=reason, only_if_waiting=only_if_waiting)
            response = await self._stub.CancelRun(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            raise _peer_error(error) from error
        return response.cancelling

    async def close(self) -> None:
        await self._channel.close()
