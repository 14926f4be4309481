"""The provider gateway, reached over gRPC (qsched.gateway.v1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qsched.wire import error_info
from qsched_core.payloads import BenchmarkConfig, CircuitProgram
from qsched_runtime.errors import peer_error
from qsched_runtime.security import PeerCredentials
from qsched_runtime.server import MAX_MESSAGE_BYTES
from qsched_scheduler.domain import Payload
from qsched_scheduler.gateway_port import (
    GatewayRejected,
    GatewayUnavailable,
    ProviderDevice,
    ProviderStatus,
    Submitted,
)

CALL_TIMEOUT_S = 60.0
_STATES = {
    pb.TASK_STATE_QUEUED: "QUEUED",
    pb.TASK_STATE_RUNNING: "RUNNING",
    pb.TASK_STATE_COMPLETED: "COMPLETED",
    pb.TASK_STATE_FAILED: "FAILED",
    pb.TASK_STATE_CANCELLED: "CANCELLED",
}
COMPILE_OPTIONS = ("optimization_level", "seed_transpiler", "seed_simulator")


def workload(payload: Payload) -> pb.Workload:
    """The gateway's form of a circuit or benchmark payload."""
    typed = payload.typed
    if isinstance(typed, CircuitProgram):
        options = json.loads(typed.compiler_options_json or "{}")
        unknown = sorted(set(options) - set(COMPILE_OPTIONS))
        if unknown:
            raise GatewayRejected(
                "INVALID_COMPILER_OPTIONS",
                f"unknown compiler option(s) {', '.join(unknown)}; known: {', '.join(COMPILE_OPTIONS)}",
                "INVALID_ARGUMENT",
            )
        return pb.Workload(
            circuits=pb.Circuits(
                qasm=typed.qasm,
                shots=typed.shots,
                qpy=typed.qpy,
                options=pb.CompileOptions(**options),
            )
        )
    assert isinstance(typed, BenchmarkConfig)
    if typed.suite_json:
        return pb.Workload(suite_json=typed.suite_json)
    return pb.Workload(benchmark_config_json=typed.config_json)


class GrpcProviderGateway:
    def __init__(self, address: str, credentials: PeerCredentials | None = None):
        self._channel = (credentials or PeerCredentials()).channel(
            address, [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        )
        self._stub = pb_grpc.ProviderGatewayServiceStub(self._channel)

    async def _unary(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, GatewayUnavailable, GatewayRejected) from error

    async def devices(self, names: tuple[str, ...] = ()) -> list[ProviderDevice]:
        response = await self._unary("ListDevices", pb.ListDevicesRequest(names=names))
        return [ProviderDevice(d.name, d.simulator, d.qubits, d.status) for d in response.devices]

    async def estimate(self, device: str, payload: Payload) -> pb.EstimateResponse:
        return await self._unary("Estimate", pb.EstimateRequest(device=device, workload=workload(payload)))

    async def validate(self, device: str, payload: Payload) -> None:
        try:
            await self._stub.Validate(
                pb.ValidateRequest(device=device, workload=workload(payload)), timeout=CALL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            failure = peer_error(error, GatewayUnavailable, GatewayRejected)
            failure.metadata = dict(error_info(error).metadata)  # e.g. the offending config key
            raise failure from error

    async def submit(self, device: str, payload: Payload, job_id: str, request_id: str) -> Submitted:
        request = pb.SubmitRequest(
            device=device, workload=workload(payload), job_id=job_id, request_id=request_id
        )
        response = await self._unary("Submit", request)
        return Submitted(tuple(response.task_ids), response.submission_id)

    async def watch(self, device: str, submitted: Submitted) -> AsyncIterator[ProviderStatus]:
        request = pb.WatchRequest(
            device=device, task_ids=submitted.task_ids, submission_id=submitted.submission_id
        )
        call = self._stub.Watch(request)
        try:
            async for message in call:
                s = message.status
                yield ProviderStatus(
                    s.task_id, _STATES.get(s.state, "QUEUED"), s.queue_position, s.message, s.provider_status
                )
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, GatewayUnavailable, GatewayRejected) from error
        finally:
            call.cancel()

    async def cancel(self, device: str, submitted: Submitted) -> None:
        request = pb.CancelRequest(
            device=device, task_ids=submitted.task_ids, submission_id=submitted.submission_id
        )
        await self._unary("Cancel", request)

    async def fetch_result(self, device: str, submitted: Submitted) -> str:
        request = pb.FetchResultRequest(
            device=device, task_ids=submitted.task_ids, submission_id=submitted.submission_id
        )
        response = await self._unary("FetchResult", request)
        tasks = [json_format.MessageToDict(t, preserving_proto_field_name=True) for t in response.results]
        return json.dumps(
            {
                "tasks": tasks,
                "benchmark_results_json": response.benchmark_results_json,
                "scoring_json": response.scoring_json,
            }
        )

    async def close(self) -> None:
        await self._channel.close()
