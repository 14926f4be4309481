"""What every per-device dispatcher shares: its background task, the event that wakes
it, and recording run updates in the store before publishing them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from qsched_scheduler.domain import Change, Run
from qsched_scheduler.store.base import RunUpdate

StoreCall = Callable[..., Awaitable[Any]]


class DispatchLoop:
    def __init__(
        self,
        device: str,
        store: Any,
        call: StoreCall,
        publish: Callable[[Change], None],
        clock: Callable[[], datetime],
    ):
        self.device = device
        self._store = store
        self._call = call
        self._publish = publish
        self._clock = clock
        self._wake = asyncio.Event()
        self._stage_wake = asyncio.Event()  # pipelined dispatch: something new may be stageable
        # True while the device's queue is held (PauseDevice / DrainDevice): start nothing.
        self.held: Callable[[], bool] = lambda: False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"dispatch-{self.device}")

    async def stop(self) -> None:
        await cancel_tasks([self._task] if self._task is not None else [])

    def wake(self) -> None:
        self._wake.set()
        self._stage_wake.set()

    async def cancel_run(self, run: Run, reason: str) -> None:
        raise NotImplementedError

    async def _loop(self) -> None:
        raise NotImplementedError

    async def _apply(self, task_id: str, update: RunUpdate) -> None:
        """Record an update of a run (durably), then tell the watchers."""
        change = await self._call(self._store.update_run, task_id, update, self._clock())
        if change is not None:
            self._publish(change)

    async def _release(self, task_id: str, message: str) -> None:
        """Undo a claim that never reached the device: the job is queued again in its place."""
        self._publish(await self._call(self._store.release_claim, task_id, message, self._clock()))


async def cancel_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
