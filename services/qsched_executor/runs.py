"""Runs and their update logs, independent of any RPC: the run queue and every WatchRun follow
the same log, so a dropped stream loses nothing and the run goes on.

All mutation happens on the event-loop thread; the board and writer threads hand updates over
with `loop.call_soon_threadsafe`."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from qsched_core.execution import DataRef, ExecutionUpdate, HeldRun, HeldState, UpdateBody
from qsched_executor.output import RunLog

# Finished runs kept for replay (WatchRun, cursors of a reopened queue): far more than a
# scheduler keeps staged, so a scheduler that reconnects finds every run it sent.
KEEP_FINISHED = 2000


@dataclass
class Run:
    task_id: str
    job_id: str
    owner: str = ""
    experiment_class: str = ""
    trace_parent: str = ""  # the job's trace: the run's span joins it
    updates: list[ExecutionUpdate] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    preempt: bool = False  # asked to yield (CancelRuns.preempt): it ends preempted, not cancelled
    resumable: bool = False  # its experiment can continue from its partial file
    data: DataRef | None = None  # its data file, once written
    lost: bool = False  # was on the board when the executor died (from the crash journal)
    reached_board: bool = False  # the board thread took it (withdraw no longer can)
    output: RunLog = field(default_factory=RunLog)  # its log lines between flushes (output.py)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return bool(self.updates) and self.updates[-1].terminal

    @property
    def last_seq(self) -> int:
        return self.updates[-1].seq if self.updates else 0

    def append(self, body: UpdateBody, time: float) -> ExecutionUpdate:
        if self.done:
            raise RuntimeError(f"run {self.task_id} is already finished")
        update = ExecutionUpdate(self.task_id, len(self.updates) + 1, time, body)
        self.updates.append(update)
        self._changed.set()
        return update

    def after(self, seq: int) -> list[ExecutionUpdate]:
        return self.updates[max(0, seq) :]

    def held(self) -> HeldRun:
        if self.lost:
            state = HeldState.LOST
        elif self.done:
            state = HeldState.ENDED
        elif self.reached_board:
            state = HeldState.RUNNING
        else:
            state = HeldState.WAITING
        return HeldRun(self.task_id, self.job_id, state, self.last_seq)

    async def follow(self, after_seq: int) -> AsyncIterator[ExecutionUpdate]:
        """Updates with seq > after_seq, then live ones until the terminal update."""
        index = max(0, after_seq)
        while True:
            while index < len(self.updates):
                yield self.updates[index]
                index += 1
            if self.done:
                return
            self._changed.clear()
            if index < len(self.updates):
                continue
            await self._changed.wait()


class RunRegistry:
    """Runs by task id: every unfinished run, and the last `keep_finished` finished ones."""

    def __init__(self, keep_finished: int = KEEP_FINISHED):
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._keep = keep_finished

    def add(self, run: Run) -> None:
        self._runs[run.task_id] = run
        if run.done:
            self.finished(run)

    def get(self, task_id: str) -> Run | None:
        return self._runs.get(task_id)

    def forget(self, task_id: str) -> None:
        self._runs.pop(task_id, None)
        self._finished.pop(task_id, None)

    def finished(self, run: Run) -> None:
        self._finished[run.task_id] = None
        while len(self._finished) > self._keep:
            old, _ = self._finished.popitem(last=False)
            self._runs.pop(old, None)

    def values(self) -> list[Run]:
        return list(self._runs.values())

    def kept_finished(self) -> list[Run]:
        return [self._runs[t] for t in self._finished if t in self._runs]
