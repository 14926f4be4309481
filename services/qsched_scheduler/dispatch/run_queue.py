"""The scheduler's end of an executor's run queue: commands with their answers matched by
request id, update batches handed out in order. Transport-free (the executor port gives it
a QueueTransport), so the gRPC adapter and the in-process test executor share it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence

from qsched_core.execution import (
    Cancelling,
    CancelRuns,
    Enqueued,
    EnqueueRuns,
    ExecutionRequest,
    OpenQueue,
    QueueCommand,
    QueueEvent,
    QueueOpened,
    RunCursor,
    UpdateBatch,
    Withdrawn,
    WithdrawRuns,
)
from qsched_scheduler.executor_port import ExecutorUnavailable, QueueTransport

ANSWER_TIMEOUT_S = 10.0
MAX_BATCH_UPDATES = 1024  # updates applied in one transaction at most


class RunQueue:
    """Use `open` to make one; `updates()` yields batches until the stream ends, then raises
    ExecutorUnavailable (so do the commands waiting for an answer)."""

    def __init__(self, transport: QueueTransport, opened: QueueOpened):
        self.transport = transport
        self.opened = opened
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[QueueEvent]] = {}
        self._batches: asyncio.Queue[UpdateBatch | BaseException] = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed = False

    @classmethod
    async def open(cls, transport: QueueTransport, cursors: Sequence[RunCursor]) -> RunQueue:
        try:
            # Bounded: a write on a channel that is still reconnecting waits for it.
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await transport.send(OpenQueue(tuple(cursors)))
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                event = await transport.receive()
        except TimeoutError as exc:
            await transport.close()
            raise ExecutorUnavailable("the executor did not answer the run queue's opening") from exc
        except BaseException:
            await transport.close()
            raise
        if not isinstance(event, QueueOpened):
            await transport.close()
            raise ExecutorUnavailable(f"the run queue opened with {type(event).__name__}, not RunQueueOpened")
        return cls(transport, event)

    async def _read(self) -> None:
        try:
            while True:
                event = await self.transport.receive()
                if isinstance(event, UpdateBatch):
                    self._batches.put_nowait(event)
                    continue
                future = self._waiting.pop(getattr(event, "request_id", 0), None)
                if future is not None and not future.done():
                    future.set_result(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._end(exc if isinstance(exc, ExecutorUnavailable) else ExecutorUnavailable(str(exc)))

    def _end(self, exc: ExecutorUnavailable) -> None:
        self.closed = True
        self._batches.put_nowait(exc)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(exc)
        self._waiting.clear()

    async def next_batch(self) -> UpdateBatch:
        """The updates that arrived since the last call, in order, as one batch (waiting for the
        first): whatever came while the previous batch was being applied goes into one
        transaction (one fsync). ExecutorUnavailable once the stream ended."""
        item = await self._batches.get()
        if isinstance(item, BaseException):
            self._batches.put_nowait(item)  # every later call raises it too
            raise item
        updates = list(item.updates)
        partials = {p.task_id: p for p in item.partials}
        merged = False
        while not self._batches.empty() and len(updates) < MAX_BATCH_UPDATES:
            more = self._batches.get_nowait()
            if isinstance(more, BaseException):
                self._batches.put_nowait(more)  # the next call raises it
                break
            updates.extend(more.updates)
            partials.update((p.task_id, p) for p in more.partials)  # a run's latest one
            merged = True
        # The partials go with the merged updates (dropped, a run's last rounds never showed).
        return UpdateBatch(tuple(updates), tuple(partials.values())) if merged else item

    async def _ask(self, command_of) -> QueueEvent:  # type: ignore[no-untyped-def]
        if self.closed:
            raise ExecutorUnavailable("the run queue stream has ended")
        request_id = next(self._ids)
        future: asyncio.Future[QueueEvent] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        await self.transport.send(command_of(request_id))
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            raise ExecutorUnavailable("the executor did not answer a run queue command") from exc
        finally:
            self._waiting.pop(request_id, None)

    async def enqueue(self, after_task_id: str, runs: Sequence[ExecutionRequest]) -> Enqueued:
        answer = await self._ask(lambda rid: EnqueueRuns(rid, after_task_id, tuple(runs)))
        assert isinstance(answer, Enqueued)
        return answer

    async def withdraw(self, task_ids: Sequence[str]) -> Withdrawn:
        answer = await self._ask(lambda rid: WithdrawRuns(rid, tuple(task_ids)))
        assert isinstance(answer, Withdrawn)
        return answer

    async def cancel(self, task_ids: Sequence[str], reason: str, preempt: bool = False) -> Cancelling:
        """Stop runs; with `preempt`, ask the run on the board to yield between rounds instead."""
        answer = await self._ask(lambda rid: CancelRuns(rid, tuple(task_ids), reason, preempt))
        assert isinstance(answer, Cancelling)
        return answer

    async def tell(self, command: QueueCommand) -> None:
        """Send a command that has no answer (WatchPartials)."""
        if self.closed:
            raise ExecutorUnavailable("the run queue stream has ended")
        await self.transport.send(command)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        if not self.closed:
            self._end(ExecutorUnavailable("the run queue was closed"))
        await self.transport.close()
