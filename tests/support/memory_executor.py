"""An in-process LabExecutor for unit tests of the scheduler's logic: each run
waits for the test to finish it (or finishes after `auto_finish_s`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from qsched_scheduler.executor_port import (
    ExecRequest,
    ExecUpdate,
    ExecutorUnavailable,
    RunNotFound,
    Violation,
)


@dataclass
class Script:
    request: ExecRequest
    updates: list[ExecUpdate] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, kind: str, **kw: object) -> None:
        self.updates.append(ExecUpdate(kind, seq=len(self.updates) + 1, **kw))  # type: ignore[arg-type]
        self.changed.set()

    @property
    def done(self) -> bool:
        return bool(self.updates) and self.updates[-1].terminal


class MemoryExecutor:
    def __init__(self, auto_finish_s: float | None = None):
        self.runs: dict[str, Script] = {}
        self.order: list[str] = []  # job ids in the order they were started
        self.auto_finish_s = auto_finish_s
        self.unavailable = False
        self.cancelled: list[str] = []
        self.started = asyncio.Event()

    async def _follow(self, script: Script, after_seq: int) -> AsyncIterator[ExecUpdate]:
        index = after_seq
        while True:
            while index < len(script.updates):
                index += 1
                yield script.updates[index - 1]
            if script.done:
                return
            script.changed.clear()
            if index >= len(script.updates):
                await script.changed.wait()

    async def _auto(self, script: Script) -> None:
        assert self.auto_finish_s is not None
        await asyncio.sleep(self.auto_finish_s)
        if not script.done:
            script.push("result", fraction=1.0, data_file_path=f"/data/{script.request.job_id}.h5")

    async def execute(self, request: ExecRequest) -> AsyncIterator[ExecUpdate]:
        if self.unavailable:
            raise ExecutorUnavailable("down")
        script = Script(request)
        self.runs[request.task_id] = script
        self.order.append(request.job_id)
        script.push("accepted")
        script.push("started")
        self.started.set()
        if self.auto_finish_s is not None:
            asyncio.get_running_loop().create_task(self._auto(script))
        async for update in self._follow(script, 0):
            yield update

    async def validate(self, request: ExecRequest) -> list[Violation]:
        if self.unavailable:
            raise ExecutorUnavailable("down")
        config = json.loads(request.expt_config_json)
        return [Violation(key, "rejected by the test") for key in config.get("reject", [])]

    async def fetch_data(self, task_id: str):
        raise RunNotFound(task_id)
        yield  # an async generator, like the real one

    async def attach(self, task_id: str, after_seq: int) -> AsyncIterator[ExecUpdate]:
        if self.unavailable:
            raise ExecutorUnavailable("down")
        script = self.runs.get(task_id)
        if script is None:
            raise RunNotFound(task_id)
        async for update in self._follow(script, after_seq):
            yield update

    async def cancel(self, task_id: str, reason: str) -> bool:
        self.cancelled.append(task_id)
        script = self.runs.get(task_id)
        if script is None or script.done:
            return False
        script.push("cancelled", message=reason)
        return True

    def finish(self, job_id: str, kind: str = "result", **kw: object) -> None:
        script = next(s for s in self.runs.values() if s.request.job_id == job_id)
        script.push(kind, **kw)

    async def close(self) -> None:
        pass
