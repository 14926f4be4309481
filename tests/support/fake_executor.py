"""A test double of the hardware executor that speaks the real qsched.executor.v1
protocol over gRPC. Runs take `duration_s` from the experiment config (default
0.05 s) and fail when the config says {"fail": "REASON"}. Runs live in tasks of
their own, so they survive the scheduler disconnecting and can be re-attached."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from google.protobuf import timestamp_pb2

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched_core.errors import DomainError
from qsched_runtime.errors import abort
from qsched_runtime.server import Registration, RunningServer, start_server

DOMAIN = "qsched.executor.v1"


class Busy(DomainError):
    code = "FAILED_PRECONDITION"


class Denied(DomainError):
    code = "PERMISSION_DENIED"


class Missing(DomainError):
    code = "NOT_FOUND"


@dataclass
class FakeRun:
    request: pb.ExecuteRequest
    updates: list[pb.ExecutionUpdate] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False


class FakeExecutor(pb_grpc.HardwareExecutorServiceServicer):
    def __init__(self, progress_steps: int = 3, hold: asyncio.Event | None = None):
        self.runs: dict[str, FakeRun] = {}
        self.started_jobs: list[str] = []
        self.current: FakeRun | None = None
        self.progress_steps = progress_steps
        self.hold = hold  # when set, runs wait for it before finishing
        self.execute_calls = 0
        self.cancel_calls: list[str] = []
        self.trace_headers: list[str] = []

    def emit(self, run: FakeRun, **kind: object) -> None:
        """Every update the fake sends goes through here (subclasses add to it, e.g. a data file)."""
        ts = timestamp_pb2.Timestamp()
        ts.GetCurrentTime()
        update = pb.ExecutionUpdate(task_id=run.request.task_id, seq=len(run.updates) + 1, time=ts, **kind)
        run.updates.append(update)
        run.changed.set()

    async def _drive(self, run: FakeRun) -> None:
        config = json.loads(run.request.experiment.expt_config_json or "{}")
        try:
            self.emit(run, started=pb.RunStarted())
            self.started_jobs.append(run.request.job_id)
            step = float(config.get("duration_s", 0.05)) / max(1, self.progress_steps)
            for i in range(1, self.progress_steps + 1):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.cancel.wait(), timeout=step)
                if run.cancel.is_set():
                    self.emit(run, cancelled=pb.RunCancelled(reason="cancelled"))
                    return
                frac = i / self.progress_steps
                self.emit(
                    run,
                    progress=pb.RunProgress(rounds_done=i, rounds_total=self.progress_steps, fraction=frac),
                )
            if self.hold is not None:
                waiter = asyncio.ensure_future(self.hold.wait())
                canceller = asyncio.ensure_future(run.cancel.wait())
                await asyncio.wait({waiter, canceller}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                canceller.cancel()
                if run.cancel.is_set():
                    self.emit(run, cancelled=pb.RunCancelled(reason="cancelled"))
                    return
            if "fail" in config:
                self.emit(run, error=pb.RunError(reason=config["fail"], message="the fake was told to fail"))
            else:
                path = f"/data/{run.request.job_id}.h5"
                self.emit(run, result=pb.RunResult(data_file_path=path, summary={"pi_gain": 0.5}))
        finally:
            run.done = True
            run.changed.set()
            if self.current is run:
                self.current = None

    async def _follow(self, run: FakeRun, after_seq: int) -> AsyncIterator[pb.ExecutionUpdate]:
        index = after_seq
        while True:
            while index < len(run.updates):
                yield run.updates[index]
                index += 1
            if run.done:
                return
            run.changed.clear()
            if index < len(run.updates):
                continue
            await run.changed.wait()

    async def Execute(self, request, context):
        self.execute_calls += 1
        self.trace_headers.append(dict(context.invocation_metadata()).get("traceparent", ""))
        if self.current is not None:
            await abort(context, Busy("DEVICE_BUSY", "the board is running another job"), DOMAIN)
        run = FakeRun(request)
        self.runs[request.task_id] = run
        self.current = run
        self.emit(run, accepted=pb.RunAccepted())
        asyncio.get_running_loop().create_task(self._drive(run))
        async for update in self._follow(run, 0):
            yield pb.ExecuteResponse(update=update)

    async def WatchRun(self, request, context):
        run = self.runs.get(request.task_id)
        if run is None:
            await abort(context, Missing("RUN_NOT_FOUND", f"no run {request.task_id}"), DOMAIN)
        async for update in self._follow(run, request.after_seq):
            yield pb.WatchRunResponse(update=update)

    async def CancelRun(self, request, context):
        self.cancel_calls.append(request.task_id)
        run = self.runs.get(request.task_id)
        if run is None or run.done:
            return pb.CancelRunResponse(cancelling=False)
        run.cancel.set()
        return pb.CancelRunResponse(cancelling=True)

    async def ValidateExperiment(self, request, context):
        config = json.loads(request.experiment.expt_config_json or "{}")
        if request.experiment.experiment_module.startswith("forbidden"):
            error = Denied(
                "MODULE_NOT_ALLOWED", f"module {request.experiment.experiment_module} is not allow-listed"
            )
            await abort(context, error, DOMAIN)
        return pb.ValidateExperimentResponse(
            violations=[pb.Violation(field=f, description="out of range") for f in config.get("reject", [])]
        )

    def data_of(self, task_id: str) -> bytes:
        """The bytes the fake serves as a run's data file."""
        return (f"HDF5 stand-in for {task_id}\n" * 9000).encode()

    async def FetchData(self, request, context):
        run = self.runs.get(request.task_id)
        if run is None or not run.done:
            await abort(context, Missing("DATA_NOT_FOUND", f"no data for {request.task_id}"), DOMAIN)
        data = self.data_of(request.task_id)
        digest = hashlib.sha256(data).hexdigest()
        for offset in range(0, len(data), 64 * 1024):
            yield pb.FetchDataResponse(
                offset=offset,
                chunk=data[offset : offset + 64 * 1024],
                total_size=len(data),
                sha256=digest if offset == 0 else "",
            )

    async def GetDevice(self, request, context):
        state = pb.DeviceInfo.STATE_BUSY if self.current else pb.DeviceInfo.STATE_IDLE
        return pb.GetDeviceResponse(device=pb.DeviceInfo(board_id="fake", board_uri="fake", state=state))


async def start_fake_executor(fake: FakeExecutor, listen: str = "127.0.0.1:0") -> RunningServer:
    name = pb.DESCRIPTOR.services_by_name["HardwareExecutorService"].full_name
    return await start_server(
        listen,
        [
            Registration(
                name, lambda server: pb_grpc.add_HardwareExecutorServiceServicer_to_server(fake, server)
            )
        ],
    )
