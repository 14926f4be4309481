"""The scheduler's end of the run queue merges the update batches that arrived while it was busy:
the partial data in them stays (a run's latest rounds, one per run)."""

from __future__ import annotations

import asyncio

from qsched_core.execution import ExecutionUpdate, PartialData, QueueOpened, Started, Succeeded, UpdateBatch
from qsched_scheduler.dispatch.run_queue import RunQueue


class _Transport:
    def __init__(self) -> None:
        self.events: asyncio.Queue = asyncio.Queue()

    async def send(self, command) -> None:
        pass

    async def receive(self):
        return await self.events.get()

    async def close(self) -> None:
        pass


def _partial(task: str, rounds: int) -> PartialData:
    return PartialData(task, "JOB-1", rounds, 5, float(rounds))


async def test_merged_batches_keep_their_partials_the_latest_per_run():
    transport = _Transport()
    queue = RunQueue(transport, QueueOpened((), None))  # type: ignore[arg-type]
    batches = [
        UpdateBatch((ExecutionUpdate("t-1", 2, 1.0, Started()),), (_partial("t-1", 1),)),
        UpdateBatch((), (_partial("t-1", 4), _partial("t-2", 1))),
        UpdateBatch((ExecutionUpdate("t-1", 3, 2.0, Succeeded()),), (_partial("t-1", 5),)),
    ]
    for batch in batches:
        transport.events.put_nowait(batch)
    for _ in range(10):  # the reader takes all three before the first next_batch
        await asyncio.sleep(0)
    merged = await queue.next_batch()
    assert [u.seq for u in merged.updates] == [2, 3]
    assert {p.task_id: p.rounds_done for p in merged.partials} == {"t-1": 5, "t-2": 1}
    transport.events.put_nowait(UpdateBatch((), (_partial("t-2", 2),)))
    alone = await queue.next_batch()
    assert [p.rounds_done for p in alone.partials] == [2] and not alone.updates
