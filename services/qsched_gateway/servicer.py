"""qsched.gateway.v1.ProviderGatewayService: translates requests into Gateway calls (proto <-> domain
in `convert`; domain errors become google.rpc.Status with an ErrorInfo through translates_errors)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qsched_gateway import convert
from qsched_gateway.errors import DOMAIN
from qsched_gateway.gateway import Gateway
from qsched_runtime.errors import translates_errors


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
        return pb.ListDevicesResponse(
            devices=[convert.device_to_pb(d) for d in devices], unavailable=unavailable
        )

    async def Estimate(self, request, context) -> pb.EstimateResponse:
        result = await self._gateway.estimate(request.device, convert.workload_from_pb(request.workload))
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

    async def Validate(self, request, context) -> pb.ValidateResponse:
        plan = await self._gateway.validate(request.device, convert.workload_from_pb(request.workload))
        return pb.ValidateResponse(params_json=plan.params_json(), circuits=len(plan.circuits))

    async def Submit(self, request, context) -> pb.SubmitResponse:
        submission, deduplicated, params_json = await self._gateway.submit(
            request.device, convert.workload_from_pb(request.workload), request.job_id, request.request_id
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
            yield pb.WatchResponse(status=convert.status_to_pb(record))

    async def Cancel(self, request, context) -> pb.CancelResponse:
        records = await self._gateway.cancel(list(request.task_ids), request.submission_id, request.device)
        return pb.CancelResponse(statuses=[convert.status_to_pb(r) for r in records])

    async def FetchResult(self, request, context) -> pb.FetchResultResponse:
        outcome = await self._gateway.fetch(list(request.task_ids), request.submission_id, request.device)
        results = []
        for record, data in outcome.tasks:
            item = pb.TaskResult(
                task_id=record.task_id, state=convert.STATE_TO_PB.get(record.state, 0), message=record.message
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
