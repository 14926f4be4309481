"""A test double of the provider gateway speaking the real qsched.gateway.v1 protocol.

Tasks stay QUEUED (with a queue position) until the test moves them on with
`advance()`, or run to completion at once when `auto_complete` is set. Counts are
fixed; a payload whose compiler options ask for it fails ({"optimization_level": 3}
is refused with INVALID_ARGUMENT as a stand-in for a bad program)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.api.gateway.v1 import gateway_pb2_grpc as pb_grpc
from qsched_core.errors import FailedPrecondition, InvalidArgument, NotFound
from qsched_runtime.errors import abort
from qsched_runtime.server import Registration, RunningServer, start_server

DOMAIN = "qsched.gateway.v1"
TERMINAL = {pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED}


@dataclass
class FakeTask:
    task_id: str
    device: str
    state: int = pb.TASK_STATE_QUEUED
    queue_position: int = 3
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    provider_status: str = ""  # the provider's own status word, sent with the state


class FakeGateway(pb_grpc.ProviderGatewayServiceServicer):
    def __init__(self, devices: tuple[str, ...] = ("fake:qpu",), auto_complete: bool = False):
        self.devices = devices
        self.auto_complete = auto_complete
        self.tasks: dict[str, FakeTask] = {}
        self.submissions: dict[str, list[str]] = {}
        self.by_request: dict[str, pb.SubmitResponse] = {}
        self.submit_calls = 0
        self.fetch_calls = 0
        self.validate_calls = 0
        self.watches = 0  # Watch calls that found their tasks (a test can wait for the follower)
        self._ids = itertools.count(1)

    # -- test controls ---------------------------------------------------------------------------
    def advance(self, task_id: str, state: int) -> None:
        task = self.tasks[task_id]
        task.state = state
        task.changed.set()

    def finish_all(self, state: int = pb.TASK_STATE_COMPLETED) -> None:
        for task in self.tasks.values():
            if task.state not in TERMINAL:
                self.advance(task.task_id, state)

    # -- the service -------------------------------------------------------------------------------
    async def ListDevices(self, request, context):
        return pb.ListDevicesResponse(
            devices=[
                pb.ProviderDevice(name=d, provider=d.split(":")[0], qubits=5, simulator=True)
                for d in self.devices
            ]
        )

    async def Estimate(self, request, context):
        if request.device not in self.devices:
            await abort(context, NotFound("DEVICE_NOT_FOUND", f"no device {request.device}"), DOMAIN)
        circuits = len(request.workload.circuits.qasm) or 1
        return pb.EstimateResponse(jobs=1, circuits=circuits, total_shots=circuits * 100, max_qubits=2)

    async def Validate(self, request, context):
        """Refuses a benchmark config with a key named "bogus", as the gateway refuses unknown keys."""
        self.validate_calls += 1
        config = request.workload.benchmark_config_json
        if '"bogus"' in config:
            error = InvalidArgument("INVALID_CONFIG", "WIT: unknown key 'bogus'", key="bogus")
            await abort(context, error, DOMAIN)
        return pb.ValidateResponse(params_json=config, circuits=1)

    async def Submit(self, request, context):
        self.submit_calls += 1
        if request.workload.circuits.options.optimization_level == 3:
            await abort(context, InvalidArgument("INVALID_PROGRAM", "the fake refuses this program"), DOMAIN)
        if request.request_id in self.by_request:
            return self.by_request[request.request_id]
        n = max(1, len(request.workload.circuits.qasm))
        ids = [f"fake/{next(self._ids)}" for _ in range(n)]
        for task_id in ids:
            state = pb.TASK_STATE_COMPLETED if self.auto_complete else pb.TASK_STATE_QUEUED
            self.tasks[task_id] = FakeTask(task_id, request.device, state)
        submission = f"sub-{len(self.submissions) + 1}"
        self.submissions[submission] = ids
        response = pb.SubmitResponse(task_ids=ids, submission_id=submission)
        self.by_request[request.request_id] = response
        return response

    def _ids_of(self, request) -> list[str]:
        return list(request.task_ids) or self.submissions.get(request.submission_id, [])

    async def Watch(self, request, context):
        ids = self._ids_of(request)
        unknown = [t for t in ids if t not in self.tasks]
        if unknown:
            await abort(context, NotFound("TASK_NOT_FOUND", f"unknown task {unknown[0]}"), DOMAIN)
        self.watches += 1
        sent: dict[str, int] = {}
        while True:
            for task_id in ids:
                task = self.tasks[task_id]
                if sent.get(task_id) != task.state:
                    sent[task_id] = task.state
                    status = pb.TaskStatus(
                        task_id=task_id,
                        state=task.state,
                        queue_position=task.queue_position if task.state == pb.TASK_STATE_QUEUED else 0,
                        message="boom" if task.state == pb.TASK_STATE_FAILED else "",
                        provider_status=task.provider_status,
                    )
                    yield pb.WatchResponse(status=status)
            if all(self.tasks[t].state in TERMINAL for t in ids):
                return
            waits = [asyncio.ensure_future(self.tasks[t].changed.wait()) for t in ids]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waits:
                waiter.cancel()
            for task_id in ids:
                self.tasks[task_id].changed.clear()

    async def Cancel(self, request, context):
        for task_id in self._ids_of(request):
            if self.tasks[task_id].state not in TERMINAL:
                self.advance(task_id, pb.TASK_STATE_CANCELLED)
        return pb.CancelResponse()

    async def FetchResult(self, request, context):
        self.fetch_calls += 1
        ids = self._ids_of(request)
        if any(self.tasks[t].state not in TERMINAL for t in ids):
            await abort(context, FailedPrecondition("RESULT_NOT_READY", "tasks still running"), DOMAIN)
        results = [
            pb.TaskResult(
                task_id=t, state=self.tasks[t].state, circuits=[pb.CircuitCounts(counts={"00": 60, "11": 40})]
            )
            for t in ids
        ]
        return pb.FetchResultResponse(results=results, benchmark_results_json='[{"score": 0.99}]')


async def start_fake_gateway(fake: FakeGateway, listen: str = "127.0.0.1:0") -> RunningServer:
    name = pb.DESCRIPTOR.services_by_name["ProviderGatewayService"].full_name
    return await start_server(
        listen,
        [
            Registration(
                name, lambda server: pb_grpc.add_ProviderGatewayServiceServicer_to_server(fake, server)
            )
        ],
    )
