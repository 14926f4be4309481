"""A test double of the hardware executor that speaks the real qsched.executor.v1 protocol over
gRPC: the memory executor's `Board` (tests/support/memory_executor.py) behind the RunQueue
stream. Runs take `duration_s` from the experiment config (default 0.05 s) and fail when the
config says {"fail": "REASON"}; with `hold` set to an asyncio.Event, a run stays on the board
until the event is set. Runs outlive the stream, so a restarted scheduler re-attaches to them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json

import grpc

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc as pb_grpc
from qsched_core.errors import DomainError
from qsched_core.execution import CancelRuns, DataRef, Failed, Progress, Succeeded, UpdateBody
from qsched_runtime import execution_wire as wire
from qsched_runtime.errors import abort
from qsched_runtime.server import Registration, RunningServer, start_server
from tests.support.memory_executor import Board, BoardRun

DOMAIN = "qsched.executor.v1"


class Denied(DomainError):
    code = "PERMISSION_DENIED"


class Missing(DomainError):
    code = "NOT_FOUND"


class Reopened(DomainError):
    code = "ABORTED"


class _ConfigBoard(Board):
    """The board, driven by each run's experiment config and the fake's `hold` event."""

    def __init__(self, fake: FakeExecutor, progress_steps: int):
        super().__init__(progress_steps=progress_steps)
        self._fake = fake

    def _schedule_finish(self) -> None:
        task_id = self.current
        run = self.runs[task_id]
        config = json.loads(run.request.experiment.expt_config_json or "{}")

        async def finish() -> None:
            steps = self.progress_steps
            for step in range(1, steps + 1):  # progress while it runs, up to 100 %
                await asyncio.sleep(float(config.get("duration_s", 0.05)) / steps)
                if self.current != task_id:
                    return
                self._append(run, Progress(step, steps, step * 100, step / steps))
            hold = self._fake.hold
            if hold is not None:
                await hold.wait()
            if self.current == task_id:
                self._finish(run, None)

        self._fake.spawn(finish())

    def _finish(self, run: BoardRun, body: UpdateBody | None) -> None:
        if body is None:
            config = json.loads(run.request.experiment.expt_config_json or "{}")
            if config.get("fail"):
                body = Failed(str(config["fail"]), "the fake was told to fail")
            else:
                body = self._fake.result_for(run)
        super()._finish(run, body)


class FakeExecutor(pb_grpc.HardwareExecutorServiceServicer):
    def __init__(self, progress_steps: int = 3, hold: asyncio.Event | None = None):
        self.hold = hold  # when set to an Event, runs wait for it before finishing
        self.board = _ConfigBoard(self, progress_steps)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what tests look at ---------------------------------------------------------------------------
    @property
    def runs(self) -> dict[str, BoardRun]:
        return self.board.runs

    @property
    def current(self) -> str:
        return self.board.current

    @property
    def started_jobs(self) -> list[str]:
        return self.board.order

    @property
    def execute_calls(self) -> int:
        """Runs handed over (enqueued)."""
        return len(self.board.requests)

    @property
    def cancel_calls(self) -> list[str]:
        return [t for c in self.board.commands if isinstance(c, CancelRuns) for t in c.task_ids]

    @property
    def trace_headers(self) -> list[str]:
        return [r.trace_parent for r in self.board.requests]

    def spawn(self, work) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def result_for(self, run: BoardRun) -> Succeeded:
        """A successful run's result (subclasses write a real file)."""
        data = self.data_of(run.request.task_id)
        name = f"{run.job_id}-{run.request.task_id[:8]}.h5"
        return Succeeded(DataRef(name, hashlib.sha256(data).hexdigest(), len(data)), {"pi_gain": 0.5})

    def data_of(self, task_id: str) -> bytes:
        """The bytes the fake serves as a run's data file."""
        return (f"HDF5 stand-in for {task_id}\n" * 9000).encode()

    # -- the service ----------------------------------------------------------------------------------
    async def RunQueue(self, request_iterator, context):
        events: asyncio.Queue = asyncio.Queue()
        self.board.open(events)

        async def pump() -> None:
            try:
                async for message in request_iterator:
                    self.board.handle(wire.command_from_pb(message))
            finally:
                events.put_nowait(None)  # the scheduler closed its side

        reader = asyncio.get_running_loop().create_task(pump())
        try:
            while True:
                event = await events.get()
                if event is None:
                    return
                if isinstance(event, BaseException):
                    await abort(
                        context, Reopened("QUEUE_REOPENED", "another run queue replaced this one"), DOMAIN
                    )
                yield wire.event_to_pb(event)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.RpcError, Exception):
                await reader
            if self.board._listener is events:
                self.board._listener = None

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

    async def FetchData(self, request, context):
        run = self.board.runs.get(request.task_id)
        if run is None or run.state.value != "ended":
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
        return wire.device_response_to_pb(self.board.board_info())


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
