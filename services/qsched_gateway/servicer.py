"""qsched.gateway.v1.ProviderGatewayService: translates protos to Gateway calls and domain results and
errors back (google.rpc.Status with an ErrorInfo)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from google.protobuf import timestamp_pb2

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qsched_gateway.errors import DOMAIN, InvalidArgument
from qsched_gateway.gateway import Gateway, Workload
from qsched_gateway.providers.base import DeviceInfo, Options
from qsched_gateway.registry import TaskRecord
from qsched_runtime.errors import translates_errors

STATE_TO_PB = {
    "QUEUED": pb.TASK_STATE_QUEUED,
    "RUNNING": pb.TASK_STATE_RUNNING,
    "COMPLETED": pb.TASK_STATE_COMPLETED,
    "FAILED": pb.TASK_STATE_FAILED,
    "CANCELLED": pb.TASK_STATE_CANCELLED,
}
DEVICE_STATUS = {
    "ONLINE": pb.DEVICE_STATUS_ONLINE,
    "AVAILABLE": pb.DEVICE_STATUS_ONLINE,
    "OFFLINE": pb.DEVICE_STATUS_OFFLINE,
    "UNAVAILABLE": pb.DEVICE_STATUS_OFFLINE,
    "RETIRED": pb.DEVICE_STATUS_OFFLINE,
    "PAUSED": pb.DEVICE_STATUS_PAUSED,
    "RESERVED": pb.DEVICE_STATUS_PAUSED,
    "MAINTENANCE": pb.DEVICE_STATUS_PAUSED,
}


def workload_from_pb(workload: pb.Workload) -> Workload:
    which = workload.WhichOneof("workload")
    if which == "circuits":
        c = workload.circuits
        o = c.options
        options = Options(
            optimization_level=o.optimization_level if o.HasField("optimization_level") else 1,
            seed_transpiler=o.seed_transpiler if o.HasField("seed_transpiler") else 7,
            seed_simulator=o.seed_simulator if o.HasField("seed_simulator") else None,
        )
        if not 0 <= options.optimization_level <= 3:
            raise InvalidArgument("INVALID_PROGRAM", "optimization_level must be 0-3")
        return Workload("circuits", list(c.qasm), list(c.qpy), c.shots, options)
    if which == "benchmark_config_json":
        return Workload("benchmark", config_json=workload.benchmark_config_json)
    if which == "suite_json":
        return Workload("suite", config_json=workload.suite_json)
    raise InvalidArgument(
        "NO_WORKLOAD", "workload is empty: give circuits, benchmark_config_json or suite_json"
    )


def device_to_pb(device: DeviceInfo) -> pb.ProviderDevice:
    return pb.ProviderDevice(
        name=device.name,
        provider=device.provider,
        qubits=device.qubits,
        coupling=[pb.QubitPair(a=a, b=b) for a, b in device.coupling],
        simulator=device.simulator,
        status=device.status,
        device_status=DEVICE_STATUS.get(device.status.upper(), pb.DEVICE_STATUS_UNKNOWN),
        basis_gates=device.basis_gates,
        noise_model=device.noise_model,
        pending_tasks=device.pending_tasks,
        description=device.description,
    )


def status_to_pb(record: TaskRecord) -> pb.TaskStatus:
    time = timestamp_pb2.Timestamp()
    time.FromNanoseconds(int(record.updated * 1e9))
    return pb.TaskStatus(
        task_id=record.task_id,
        state=STATE_TO_PB.get(record.state, pb.TASK_STATE_UNSPECIFIED),
        queue_position=record.queue_position,
        message=record.message,
        time=time,
        provider_status=record.provider_status,
        provider_task_id=record.native_id,
        device=record.device,
    )


@translates_errors(DOMAIN)
class GatewayServicer(pb_grpc.ProviderGatewayServiceServicer):
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    async def ListProviders(self, request, context) -> pb.ListProvidersResponse:
        providers = []
        for adapter, configured, source in self._gateway.providers():
            try:
                version = adapter.sdk_version()
            except Exception:
                version = ""
            providers.append(
                pb.Provider(
                    name=adapter.name,
                    configured=configured,
                    sdk_version=version,
                    credentials_source=source,
                    offline_capability=adapter.offline_capability,
                )
            )
        return pb.ListProvidersResponse(providers=providers)

    async def ListDevices(self, request, context) -> pb.ListDevicesResponse:
        devices, unavailable = await self._gateway.list_devices(request.provider, list(request.names))
        return pb.ListDevicesResponse(devices=[device_to_pb(d) for d in devices], unavailable=unavailable)

    async def Estimate(self, request, context) -> pb.EstimateResponse:
        result = await self._gateway.estimate(request.device, workload_from_pb(request.workload))
        per = result.per_circuit
        return pb.EstimateResponse(
            jobs=result.jobs,
            circuits=len(per),
            total_shots=sum(c.shots for c in per),
            max_qubits=max((c.qubits for c in per), default=0),
            per_circuit=[
                pb.CircuitEstimate(
                    qubits=c.qubits,
                    depth=c.depth,
                    one_qubit_gates=c.one_qubit,
                    two_qubit_gates=c.two_qubit,
                    multi_qubit_gates=c.multi_qubit,
                    measurements=c.measurements,
                    resets=c.resets,
                    shots=c.shots,
                    hqc=c.hqc,
                    benchmark=c.benchmark,
                )
                for c in per
            ],
            cost=result.cost,
            cost_unit=result.cost_unit,
            cost_basis=result.cost_basis,
            total_one_qubit_gates=sum(c.one_qubit for c in per),
            total_two_qubit_gates=sum(c.two_qubit for c in per),
            total_multi_qubit_gates=sum(c.multi_qubit for c in per),
            total_measurements=sum(c.measurements for c in per),
            total_resets=sum(c.resets for c in per),
            total_hqc=sum(c.hqc for c in per),
            params_json=result.params_json,
        )

    async def Submit(self, request, context) -> pb.SubmitResponse:
        submission, deduplicated, params_json = await self._gateway.submit(
            request.device, workload_from_pb(request.workload), request.job_id, request.request_id
        )
        return pb.SubmitResponse(
            task_ids=submission.task_ids,
            submission_id=submission.submission_id,
            deduplicated=deduplicated,
            params_json=params_json,
        )

    async def Watch(self, request, context) -> AsyncIterator[pb.WatchResponse]:
        async for record in self._gateway.watch(
            list(request.task_ids), request.submission_id, request.device
        ):
            yield pb.WatchResponse(status=status_to_pb(record))

    async def Cancel(self, request, context) -> pb.CancelResponse:
        records = await self._gateway.cancel(list(request.task_ids), request.submission_id, request.device)
        return pb.CancelResponse(statuses=[status_to_pb(r) for r in records])

    async def FetchResult(self, request, context) -> pb.FetchResultResponse:
        outcome = await self._gateway.fetch(list(request.task_ids), request.submission_id, request.device)
        results = []
        for record, data in outcome.tasks:
            item = pb.TaskResult(
                task_id=record.task_id, state=STATE_TO_PB.get(record.state, 0), message=record.message
            )
            if data is not None:
                item.circuits.extend(
                    pb.CircuitCounts(counts=counts, index=index)
                    for index, counts in zip(data.circuit_indices, data.counts, strict=True)
                )
                item.execution_seconds = data.execution_seconds
                item.metadata_json = json.dumps(
                    {"provider_task_id": record.native_id, "device": record.device, **data.metadata},
                    sort_keys=True,
                    default=str,
                )
            results.append(item)
        return pb.FetchResultResponse(
            results=results,
            benchmark_results_json=outcome.benchmark_json,
            submission_id=outcome.submission_id,
            scoring_json=outcome.scoring_json,
        )
