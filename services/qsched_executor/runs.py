"""Runs and their update logs, independent of any RPC: the Execute stream and every WatchRun
follow the same log, so a dropped stream loses nothing and the run goes on.

All mutation happens on the event-loop thread; the worker thread hands updates over with
`loop.call_soon_threadsafe`."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEEP_FINISHED = 100


@dataclass
class Update:
    """One entry of a run's log, in domain form. `kind` is accepted | started | progress |
    result | error | cancelled; `fields` holds the kind's values."""

    seq: int
    kind: str
    time: float
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.kind in ("result", "error", "cancelled")


@dataclass
class Run:
    task_id: str
    job_id: str
    owner: str
    experiment_class: str
    experiment_module: str
    updates: list[Update] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    data_file: Path | None = None
    data_sha256: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return bool(self.updates) and self.updates[-1].terminal

    def append(self, kind: str, time: float, **fields: Any) -> Update:
        if self.done:
            raise RuntimeError(f"run {self.task_id} is already finished")
        update = Update(len(self.updates) + 1, kind, time, fields)
        self.updates.append(update)
        self._changed.set()
        return update

    async def follow(self, after_seq: int) -> AsyncIterator[Update]:
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
    """Runs by task id: every unfinished run, and the last KEEP_FINISHED finished ones."""

    def __init__(self, keep_finished: int = KEEP_FINISHED):
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._keep = keep_finished

    def add(self, run: Run) -> None:
        self._runs[run.task_id] = run
        self._trim()

    def get(self, task_id: str) -> Run | None:
        return self._runs.get(task_id)

    def finished(self, run: Run) -> None:
        self._runs.move_to_end(run.task_id)
        self._trim()

    def _trim(self) -> None:
        done = [task for task, run in self._runs.items() if run.done]
        for task in done[: max(0, len(done) - self._keep)]:
            del self._runs[task]
