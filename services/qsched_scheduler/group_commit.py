"""Group commit for submissions: concurrent SubmitJob calls share one store transaction.

Each caller enqueues its job and waits; one flusher at a time takes everything queued so far
to the store thread, which writes it in one transaction (one commit, one fsync) and answers
every caller of that batch only after the commit. Nothing waits to fill a batch: a lone
submit is written at once, and batches grow by themselves while the store thread is busy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

MAX_BATCH = 500


class GroupCommit(Generic[In, Out]):
    def __init__(self, write: Callable[[list[In]], Awaitable[list[Out]]], max_batch: int = MAX_BATCH):
        self._write = write  # the batch -> one outcome per item, in order (durable on return)
        self._max = max_batch
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        return (await self.submit_all([item]))[0]

    async def submit_all(self, items: list[In]) -> list[Out]:
        """Items of one call go into the same batch when they fit in one."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        if not self._flushing:
            self._flushing = True
            self._task = loop.create_task(self._flush())
        return list(await asyncio.gather(*futures))

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                try:
                    outcomes = await self._write([item for item, _ in batch])
                except Exception as exc:  # the whole transaction failed: every caller hears why
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):  # this item only was refused (a quota)
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._flushing = False
