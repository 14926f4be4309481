"""An executor double with a simulated board, in process: `MemoryExecutor` is a LabExecutor for
unit tests of the engine (with a MemoryStore); tests/support/fake_executor.py serves the same
`Board` over the real RunQueue gRPC.

The board keeps the run-queue semantics of protos/qsched/executor/v1/executor.proto: runs wait in
the order they were enqueued (checked against the tail), start the moment the board is free, and
outlive the stream; a new stream replaces the old one. By default a run finishes by itself at
once (`run_s` later); `hold()` keeps each started run on the board until `finish_current()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from qsched_core.execution import (
    Accepted,
    BoardInfo,
    Cancelled,
    Cancelling,
    CancelRuns,
    DataChunk,
    DataRef,
    Enqueued,
    EnqueueRuns,
    ExecutionRequest,
    ExecutionUpdate,
    Failed,
    HeldRun,
    HeldState,
    OpenQueue,
    PinnedRevision,
    Progress,
    QueueCommand,
    QueueEvent,
    QueueOpened,
    RefusedRun,
    Started,
    Succeeded,
    UpdateBatch,
    UpdateBody,
    Validated,
    Violation,
    Withdrawn,
    WithdrawRuns,
)
from qsched_core.payloads import LabExperiment
from qsched_scheduler.executor_port import ExecutorUnavailable, RunNotFound


@dataclass
class BoardRun:
    request: ExecutionRequest
    updates: list[ExecutionUpdate] = field(default_factory=list)
    state: HeldState = HeldState.WAITING

    @property
    def job_id(self) -> str:
        return self.request.job_id


class Board:
    def __init__(self, run_s: float = 0.0, progress_steps: int = 1):
        self.run_s = run_s
        self.progress_steps = progress_steps
        self.runs: dict[str, BoardRun] = {}
        self.waiting: list[str] = []
        self.current = ""
        self.held = False
        self.order: list[str] = []  # job ids in the order they started
        self.requests: list[ExecutionRequest] = []  # every run enqueued, in order
        self.started = asyncio.Event()  # set at each start (tests clear it)
        self.violations: dict[str, list[Violation]] = {}  # by experiment class
        self.refuse: dict[str, str] = {}  # experiment class -> refusal reason at enqueue
        self.resumable = True  # a run that yields leaves a file its next run can continue from
        self.commands: list[QueueCommand] = []
        self.streams_opened = 0
        self._listener: asyncio.Queue[QueueEvent | BaseException] | None = None
        self._pending: list[ExecutionUpdate] = []
        self._flush_scheduled = False
        self._finisher: asyncio.TimerHandle | None = None

    # -- the test's controls ------------------------------------------------------------------------------
    def hold(self) -> None:
        """Started runs stay on the board until finish_current()."""
        self.held = True

    def release(self) -> None:
        self.held = False
        if self.current:
            self._schedule_finish()

    def finish_current(self, body: UpdateBody | None = None) -> str:
        """End the running run (succeeded unless `body` says otherwise); its job id."""
        assert self.current, "no run on the board"
        run = self.runs[self.current]
        self._finish(run, body)
        return run.job_id

    def restart(self) -> None:
        """The executor process dies and comes back: the stream ends, the run on the board is
        lost, waiting runs are forgotten, ended ones are remembered."""
        if self.current:
            run = self.runs[self.current]
            run.state = HeldState.LOST
            self._append(run, Failed("EXECUTOR_LOST", "the executor restarted during the run"))
            self.current = ""
        for task_id in self.waiting:
            del self.runs[task_id]
        self.waiting.clear()
        self._pending.clear()
        self.drop_stream()

    def drop_stream(self) -> None:
        if self._listener is not None:
            self._listener.put_nowait(ExecutorUnavailable("stream broken"))
            self._listener = None

    @property
    def tail(self) -> str:
        return self.waiting[-1] if self.waiting else self.current

    def board_info(self) -> BoardInfo:
        current = self.runs.get(self.current)
        return BoardInfo(
            board_id="memory-board",
            simulated=True,
            current_task_id=self.current,
            current_job_id=current.job_id if current else "",
            waiting_task_ids=tuple(self.waiting),
        )

    # -- the stream ----------------------------------------------------------------------------------------
    def open(self, listener: asyncio.Queue[QueueEvent | BaseException]) -> None:
        self.drop_stream()  # a second RunQueue replaces the first
        self._listener = listener
        self.streams_opened += 1

    def handle(self, command: QueueCommand) -> None:
        """A command from the scheduler; its answer (and any updates) go to the listener."""
        self.commands.append(command)
        if isinstance(command, OpenQueue):
            self._opened(command)
        elif isinstance(command, EnqueueRuns):
            self._enqueue(command)
        elif isinstance(command, WithdrawRuns):
            self._withdraw(command)
        elif isinstance(command, CancelRuns):
            self._cancel(command)

    def _send(self, event: QueueEvent) -> None:
        self._flush()  # updates that happened before this answer go first
        if self._listener is not None:
            self._listener.put_nowait(event)

    def _opened(self, command: OpenQueue) -> None:
        named = {c.task_id: c.after_seq for c in command.cursors}
        held = []
        for task_id in [*named, *([self.current] if self.current else []), *self.waiting]:
            run = self.runs.get(task_id)
            if run is not None and all(h.task_id != task_id for h in held):
                held.append(HeldRun(task_id, run.job_id, run.state, len(run.updates)))
        self._send(QueueOpened(tuple(held), self.board_info()))
        replay = [u for t, after in named.items() if t in self.runs for u in self.runs[t].updates[after:]]
        if replay:
            self._send(UpdateBatch(tuple(replay)))

    def _enqueue(self, command: EnqueueRuns) -> None:
        if command.after_task_id != self.tail:
            self._send(Enqueued(queue_moved=True, tail_task_id=self.tail, request_id=command.request_id))
            return
        accepted, refused = [], []
        for request in command.runs:
            reason = self.refuse.get(request.experiment.experiment_class)
            if request.task_id in self.runs:
                refused.append(RefusedRun(request.task_id, "DUPLICATE_TASK", "already known"))
                continue
            if reason:
                refused.append(RefusedRun(request.task_id, reason, "refused by the test board"))
                continue
            run = self.runs[request.task_id] = BoardRun(request)
            self.requests.append(request)
            self.waiting.append(request.task_id)
            self._append(run, Accepted())
            accepted.append(request.task_id)
        self._send(
            Enqueued(tuple(accepted), tuple(refused), tail_task_id=self.tail, request_id=command.request_id)
        )
        self._start_next()

    def _withdraw(self, command: WithdrawRuns) -> None:
        withdrawn, started, unknown = [], [], []
        for task_id in command.task_ids:
            if task_id in self.waiting:
                self.waiting.remove(task_id)
                del self.runs[task_id]
                withdrawn.append(task_id)
            elif task_id in self.runs:
                started.append(task_id)
            else:
                unknown.append(task_id)
        self._send(Withdrawn(tuple(withdrawn), tuple(started), tuple(unknown), command.request_id))

    def _cancel(self, command: CancelRuns) -> None:
        if command.preempt:  # a yield: the run on the board stops after its first round
            yielding = [t for t in command.task_ids if t == self.current]
            ignored = tuple(t for t in command.task_ids if t not in yielding)
            self._send(Cancelling(tuple(yielding), ignored, command.request_id))
            for task_id in yielding:
                run = self.runs[task_id]
                name = f"2026/12/07/{run.job_id}-{task_id}.h5"
                ref = DataRef(name, "1" * 64, len(self.data_of(task_id)))
                body = Cancelled(command.reason, 1, ref, preempted=True, resumable=self.resumable)
                self._finish(run, body)
            return
        cancelling, ignored = [], []
        for task_id in command.task_ids:
            run = self.runs.get(task_id)
            if run is None or run.state in (HeldState.ENDED, HeldState.LOST):
                ignored.append(task_id)
                continue
            cancelling.append(task_id)
        self._send(Cancelling(tuple(cancelling), tuple(ignored), command.request_id))
        for task_id in cancelling:
            run = self.runs[task_id]
            if task_id in self.waiting:
                self.waiting.remove(task_id)
                run.state = HeldState.ENDED
                self._append(run, Cancelled(command.reason))
            else:
                self._finish(run, Cancelled(command.reason, rounds_done=1))

    # -- the board -------------------------------------------------------------------------------------------
    def _append(self, run: BoardRun, body: UpdateBody) -> None:
        update = ExecutionUpdate(run.request.task_id, len(run.updates) + 1, 0.0, body)
        run.updates.append(update)
        self._pending.append(update)
        if not self._flush_scheduled:  # what happens in one step goes in one batch
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._pending and self._listener is not None:
            self._listener.put_nowait(UpdateBatch(tuple(self._pending)))
        self._pending = []

    def _start_next(self) -> None:
        if self.current or not self.waiting:
            return
        task_id = self.waiting.pop(0)
        run = self.runs[task_id]
        run.state = HeldState.RUNNING
        self.current = task_id
        self.order.append(run.job_id)
        self._append(run, Started())
        self.started.set()
        if not self.held:
            self._schedule_finish()

    def _schedule_finish(self) -> None:
        task_id = self.current

        def finish() -> None:
            if self.current == task_id and not self.held:
                self._finish(self.runs[task_id], None)

        asyncio.get_running_loop().call_later(self.run_s, finish)

    def _finish(self, run: BoardRun, body: UpdateBody | None) -> None:
        if body is None:
            for step in range(1, self.progress_steps + 1):
                fraction = step / (self.progress_steps + 1)
                self._append(run, Progress(step, self.progress_steps + 1, 0, fraction))
            name = f"2026/12/07/{run.job_id}-{run.request.task_id}.h5"
            body = Succeeded(DataRef(name, "0" * 64, len(self.data_of(run.request.task_id))), {"fit": 1.0})
        run.state = HeldState.ENDED
        self._append(run, body)
        if self.current == run.request.task_id:
            self.current = ""
        self._start_next()

    def data_of(self, task_id: str) -> bytes:
        return f"HDF5 of {task_id}".encode()

    def validate(self, experiment: LabExperiment) -> list[Violation]:
        return list(self.violations.get(experiment.experiment_class, []))


class _MemoryQueue:
    """An in-process QueueTransport onto a Board."""

    def __init__(self, board: Board):
        self._board = board
        self._events: asyncio.Queue[QueueEvent | BaseException] = asyncio.Queue()
        board.open(self._events)
        self._closed = False

    async def send(self, command: QueueCommand) -> None:
        if self._closed or self._board._listener is not self._events:
            raise ExecutorUnavailable("the run queue stream is gone")
        self._board.handle(command)

    async def receive(self) -> QueueEvent:
        event = await self._events.get()
        if isinstance(event, BaseException):
            self._events.put_nowait(event)
            raise event
        return event

    async def close(self) -> None:
        self._closed = True
        if self._board._listener is self._events:
            self._board._listener = None
        self._events.put_nowait(ExecutorUnavailable("closed"))


class MemoryExecutor:
    """A LabExecutor onto a Board, in process. `unavailable` refuses new streams."""

    def __init__(self, board: Board | None = None):
        self.board = board or Board()
        self.unavailable = False
        self.validations = 0

    async def open_queue(self) -> _MemoryQueue:
        if self.unavailable:
            raise ExecutorUnavailable("the memory executor is down")
        return _MemoryQueue(self.board)

    async def validate(self, experiment: LabExperiment, configs: Sequence[PinnedRevision] = ()) -> Validated:
        if self.unavailable:
            raise ExecutorUnavailable("the memory executor is down")
        self.validations += 1
        return Validated(tuple(self.board.validate(experiment)))

    async def fetch_data(self, task_id: str, name: str = "") -> AsyncIterator[DataChunk]:
        if task_id not in self.board.runs:
            raise RunNotFound(task_id)
        data = self.board.data_of(task_id)
        yield DataChunk(0, data, len(data), "0" * 64, name)

    async def close(self) -> None:
        pass
