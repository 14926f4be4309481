"""Pipelined dispatch against the in-memory store: queued jobs are handed to the executor
ahead of time (they stay QUEUED), start in run order the moment the previous run ends, and the
store never shows two running jobs on the device."""

from __future__ import annotations

import asyncio
import collections

from qsched_scheduler.domain import JobFilter, JobState, ListView
from qsched_scheduler.executor_port import ExecRequest, ExecutorRejected
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from tests.scheduler.unit.test_scheduler_logic import sub, wait_state
from tests.support.memory_executor import MemoryExecutor, Script
from tests.support.waiting import eventually


class PipeliningExecutor(MemoryExecutor):
    """One run on the board at a time; a run sent with after_task_id waits behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.board: str | None = None  # task on the board
        self.waiting: collections.deque[Script] = collections.deque()
        self.last = ""
        self.ahead = 0  # runs taken while the board was busy

    async def pipelining(self) -> bool:
        return True

    def _start(self, script: Script) -> None:
        self.board = script.request.task_id
        self.order.append(script.request.job_id)
        script.push("started")
        self.started.set()

    async def execute(self, request: ExecRequest):
        if self.board is not None and (not request.after_task_id or request.after_task_id != self.last):
            raise ExecutorRejected("DEVICE_BUSY", "busy")
        script = Script(request)
        self.runs[request.task_id] = script
        self.last = request.task_id
        script.push("accepted")
        if self.board is None:
            self._start(script)
        else:
            self.ahead += 1
            self.waiting.append(script)
        async for update in self._follow(script, 0):
            yield update

    def finish(self, job_id: str, kind: str = "result", **kw: object) -> None:
        script = [s for s in self.runs.values() if s.request.job_id == job_id][-1]  # its latest run
        assert script.request.task_id == self.board, "only the run on the board can end"
        self.board = None
        if self.waiting:
            self._start(self.waiting.popleft())  # before the scheduler hears of the end
        script.push(kind, **kw)

    async def cancel(self, task_id: str, reason: str, only_if_waiting: bool = False) -> bool:
        script = self.runs.get(task_id)
        if script in self.waiting:
            self.waiting.remove(script)
            self.cancelled.append(task_id)
            script.push("cancelled", message=reason)
            return True
        if only_if_waiting:
            return False
        return await super().cancel(task_id, reason)


async def test_queued_jobs_are_handed_over_ahead_and_run_in_order_one_at_a_time():
    store, executor = MemoryJobStore(), PipeliningExecutor()
    scheduler = Scheduler(store, {"qick": executor}, page_key=b"k" * 32)
    await scheduler.start()
    try:
        first = (await scheduler.submit(sub())).job
        await wait_state(scheduler, first.job_id, JobState.RUNNING)
        rest = [(await scheduler.submit(sub())).job for _ in range(4)]
        await eventually(lambda: len(executor.waiting) == 2)  # PIPELINE_DEPTH jobs wait on the executor
        staged = store.staged_jobs("qick")
        assert [j.job_id for j in staged] == [rest[0].job_id, rest[1].job_id]
        assert all(j.state is JobState.QUEUED for j in staged)
        queue = store.list_jobs(JobFilter(view=ListView.QUEUE, device="qick"), None, 10)
        assert [j.state for j in queue].count(JobState.RUNNING) == 1

        for job in [first, *rest]:
            await eventually(lambda job=job: executor.board is not None and executor.order[-1] == job.job_id)
            executor.finish(job.job_id)
            done = await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
            assert [e.message for e in store.events_after(job.job_id, 0)][:2] == [
                "queued",
                "dispatched to the device",
            ]
            assert done.current_run is not None
        assert executor.order == [j.job_id for j in (first, *rest)]
        assert executor.ahead >= 2  # some runs really were taken while the board was busy
    finally:
        await scheduler.stop()


async def test_cancelling_a_job_handed_over_ahead_withdraws_it_from_the_executor():
    store, executor = MemoryJobStore(), PipeliningExecutor()
    scheduler = Scheduler(store, {"qick": executor}, page_key=b"k" * 32)
    await scheduler.start()
    try:
        first = (await scheduler.submit(sub())).job
        await wait_state(scheduler, first.job_id, JobState.RUNNING)
        second = (await scheduler.submit(sub())).job
        third = (await scheduler.submit(sub())).job
        await eventually(lambda: len(executor.waiting) == 2)
        cancelled = await scheduler.cancel(second.job_id)
        assert cancelled.state is JobState.CANCELLED
        await eventually(lambda: len(executor.waiting) == 1)
        executor.finish(first.job_id)
        await wait_state(scheduler, third.job_id, JobState.RUNNING)
        executor.finish(third.job_id)
        await wait_state(scheduler, third.job_id, JobState.SUCCEEDED)
        assert executor.order == [first.job_id, third.job_id]  # the cancelled job never ran
        assert (await scheduler.get(second.job_id)).state is JobState.CANCELLED
    finally:
        await scheduler.stop()


async def test_a_higher_priority_job_takes_the_place_of_jobs_handed_over_that_have_not_started():
    store, executor = MemoryJobStore(), PipeliningExecutor()
    scheduler = Scheduler(store, {"qick": executor}, page_key=b"k" * 32)
    await scheduler.start()
    try:
        first = (await scheduler.submit(sub())).job
        await wait_state(scheduler, first.job_id, JobState.RUNNING)
        low = [(await scheduler.submit(sub())).job for _ in range(2)]
        await eventually(lambda: len(executor.waiting) == 2)
        high = (await scheduler.submit(sub(priority=5))).job
        # Both low jobs are taken back (neither had started); the high one goes first.
        await eventually(lambda: [s.request.job_id for s in executor.waiting] == [high.job_id, low[0].job_id])
        assert len(executor.cancelled) == 2  # withdrawn from the executor, never run
        assert all(store.get(j.job_id).state is JobState.QUEUED for j in low)
        for job in (first, high, *low):
            await eventually(lambda job=job: executor.board is not None and executor.order[-1] == job.job_id)
            executor.finish(job.job_id)
            await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
        assert executor.order == [first.job_id, high.job_id, low[0].job_id, low[1].job_id]
    finally:
        await scheduler.stop()


async def test_holding_the_queue_takes_back_what_has_not_started():
    store, executor = MemoryJobStore(), PipeliningExecutor()
    scheduler = Scheduler(store, {"qick": executor}, page_key=b"k" * 32)
    await scheduler.start()
    try:
        first = (await scheduler.submit(sub())).job
        await wait_state(scheduler, first.job_id, JobState.RUNNING)
        rest = [(await scheduler.submit(sub())).job for _ in range(2)]
        await eventually(lambda: len(executor.waiting) == 2)
        held = True
        scheduler.is_held = lambda device: held
        scheduler.held_now("qick")  # PauseDevice: the running job finishes, nothing else starts
        await eventually(lambda: not executor.waiting)
        executor.finish(first.job_id)
        await wait_state(scheduler, first.job_id, JobState.SUCCEEDED)
        await asyncio.sleep(0.05)
        assert executor.board is None and executor.order == [first.job_id]
        assert all(store.get(j.job_id).state is JobState.QUEUED for j in rest)
        held = False
        scheduler.wake("qick")  # ResumeDevice
        for job in rest:
            await eventually(lambda job=job: executor.board is not None and executor.order[-1] == job.job_id)
            executor.finish(job.job_id)
            await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    finally:
        await scheduler.stop()
