"""The lab dispatch path on the memory board, with the memory store, SQLite and PostgreSQL: claim at
submit, batched staging with reasons and pins, priority order, cancel of a staged job, pause and
resume, reconcile after a restart of either side, an executor lost, a push racing a deep queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from qsched_core.execution import EnqueueRuns, WithdrawRuns
from qsched_scheduler.domain import JobKind, JobState, Payload
from qsched_scheduler.main_revisions import CaughtUp, MainRevision, MainRevisions, Snapshot
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.support.memory_executor import Board, MemoryExecutor
from tests.support.waiting import eventually


def lab(config: dict | None = None, **extra) -> Payload:
    body = {
        "experiment_class": "AmplitudeRabiExperiment",
        "experiment_module": "exp.rabi",
        "expt_config_json": json.dumps(config or {}),
        **extra,
    }
    return Payload(JobKind.LAB_EXPERIMENT, body)


def sub(priority: int = 0, **kw) -> Submission:
    return Submission(device="qick", payload=kw.pop("payload", lab()), priority=priority, owner="alice", **kw)


@dataclass(frozen=True)
class Hold:
    mode: str
    reason: str
    held_by: str


class Holds:
    def __init__(self) -> None:
        self.holds: dict[str, Hold] = {}

    def hold_of(self, device: str) -> Hold | None:
        return self.holds.get(device)


def engine(store, executor, **kw) -> Scheduler:
    """Staging depth follows the typical run time: 60 s by default (2 staged), 0.01 s → 64."""
    return Scheduler.build(store, {"qick": executor}, page_key=b"k" * 32, **kw)


async def started(scheduler: Scheduler) -> Scheduler:
    await scheduler.start()
    await scheduler.routes.labs["qick"].connected.wait()
    return scheduler


async def state_of(scheduler: Scheduler, job_id: str, state: JobState):
    return await eventually(
        lambda: scheduler.get(job_id), until=lambda j: j.state is state, what=f"{job_id} {state}"
    )


async def on_board(board: Board, job_id: str) -> None:
    await eventually(lambda: board.current and board.order[-1] == job_id, what=f"{job_id} on the board")


def enqueues(board: Board) -> list[EnqueueRuns]:
    return [c for c in board.commands if isinstance(c, EnqueueRuns)]


@pytest.fixture
async def held(new_store):
    """An engine whose board keeps each run until the test finishes it."""
    store, executor, holds = new_store(), MemoryExecutor(), Holds()
    executor.board.hold()
    scheduler = await started(engine(store, executor, hold_of=holds.hold_of, default_run_seconds=0.01))
    yield scheduler, executor.board, store, holds
    await scheduler.stop()


async def test_the_queue_is_staged_in_batches_behind_the_running_run_with_reasons(held):
    scheduler, board, _, _ = held
    first = (await scheduler.submit(sub())).job
    assert first.staged_task_id, "an idle device takes the job in the submit's transaction"
    await on_board(board, first.job_id)
    # Submitted together (one group commit): staged as one batch, sent with one EnqueueRuns.
    results = await asyncio.gather(*(scheduler.submit(sub()) for _ in range(6)))
    ids = [r.job.job_id for r in results]
    await eventually(lambda: len(board.waiting), until=lambda n: n == 6, what="six runs waiting on the board")
    assert [len(e.runs) for e in enqueues(board)][1:] in ([6], [1, 5], [1, 1, 4])  # the first one may race
    staged = await scheduler.get(ids[0])
    assert staged.state is JobState.QUEUED and staged.current_run.staged
    assert staged.current_run.reason.policy == "priority-fifo"
    for job_id in [first.job_id, *ids]:
        await on_board(board, job_id)
        board.finish_current()
        done = await state_of(scheduler, job_id, JobState.SUCCEEDED)
        assert not done.current_run.staged and done.current_run.data is not None
    assert board.order == [first.job_id, *ids]


async def test_a_higher_priority_job_takes_the_place_of_staged_runs(held):
    scheduler, board, _, _ = held
    first = (await scheduler.submit(sub())).job
    await on_board(board, first.job_id)
    low = [(await scheduler.submit(sub(0))).job.job_id for _ in range(2)]
    await eventually(lambda: len(board.waiting), until=lambda n: n == 2, what="two staged")
    high = (await scheduler.submit(sub(50))).job.job_id
    await eventually(
        lambda: [board.runs[t].job_id for t in board.waiting],
        until=lambda w: w == [high, *low],
        what="high first",
    )
    assert any(isinstance(c, WithdrawRuns) for c in board.commands)
    for _ in range(4):
        board.finish_current()
        await eventually(lambda: board.current or not board.waiting, what="the next run")
    assert board.order == [first.job_id, high, *low]


async def test_cancel_of_a_staged_job_withdraws_it(held):
    scheduler, board, _, _ = held
    first = (await scheduler.submit(sub())).job
    await on_board(board, first.job_id)
    staged = (await scheduler.submit(sub())).job
    task = (
        await eventually(lambda: scheduler.get(staged.job_id), until=lambda j: j.staged_task_id)
    ).staged_task_id
    await eventually(lambda: task in board.waiting, what="the staged run on the board's queue")
    cancelled = await scheduler.cancel(staged.job_id, "no longer needed")
    assert cancelled.state is JobState.CANCELLED and task not in board.runs
    board.finish_current()
    await state_of(scheduler, first.job_id, JobState.SUCCEEDED)
    assert board.order == [first.job_id]  # the finish was applied after the withdrawal: it never ran


async def test_holding_the_device_takes_staged_runs_back_and_resume_hands_them_over(held):
    scheduler, board, _, holds = held
    first = (await scheduler.submit(sub())).job
    await on_board(board, first.job_id)
    rest = [(await scheduler.submit(sub())).job.job_id for _ in range(2)]
    await eventually(lambda: len(board.waiting), until=lambda n: n == 2, what="two staged")
    holds.holds["qick"] = Hold("PAUSED", "maintenance", "op")
    scheduler.hold_changed("qick")
    await eventually(lambda: board.waiting, until=lambda w: w == [], what="the staged runs taken back")
    waiting = await scheduler.get(rest[0])
    assert waiting.state is JobState.QUEUED and not waiting.staged_task_id and waiting.run_count == 0
    assert waiting.waiting_reason.policy == "device-hold" and "maintenance" in waiting.waiting_reason.summary
    board.finish_current()  # the running one finishes (a pause does not stop it)
    await state_of(scheduler, first.job_id, JobState.SUCCEEDED)
    assert (await scheduler.get(rest[0])).state is JobState.QUEUED
    del holds.holds["qick"]
    scheduler.hold_changed("qick")
    for job_id in rest:
        await on_board(board, job_id)
        board.finish_current()
    assert board.order == [first.job_id, *rest]


async def test_a_scheduler_restart_reattaches_to_running_and_staged_runs(new_store):
    store, executor = new_store(), MemoryExecutor()
    executor.board.hold()
    first = await started(engine(store, executor, default_run_seconds=0.01))
    ids = [(await first.submit(sub())).job.job_id for _ in range(4)]
    await eventually(lambda: len(executor.board.waiting), until=lambda n: n == 3, what="three staged")
    await first.routes.stop()  # the scheduler dies (nothing more is recorded by it)
    # Meanwhile the board goes on: the first run ends, the second starts.
    executor.board.finish_current()
    second = await started(engine(store, executor))
    try:
        await state_of(second, ids[0], JobState.SUCCEEDED)
        await state_of(second, ids[1], JobState.RUNNING)
        for job_id in ids[1:]:
            await on_board(executor.board, job_id)
            executor.board.finish_current()
            await state_of(second, job_id, JobState.SUCCEEDED)
        assert executor.board.order == ids  # each ran once, in order
    finally:
        await second.stop()


async def test_an_executor_restart_fails_the_lost_run_and_requeues_the_staged_ones(new_store):
    store, executor = new_store(), MemoryExecutor()
    executor.board.hold()
    scheduler = await started(engine(store, executor))
    try:
        ids = [(await scheduler.submit(sub())).job.job_id for _ in range(3)]
        await eventually(lambda: len(executor.board.waiting), until=lambda n: n == 2, what="two staged")
        executor.board.restart()
        lost = await state_of(scheduler, ids[0], JobState.FAILED)
        assert lost.error.reason == "EXECUTOR_LOST"
        # The staged ones were forgotten by the executor: queued again in their place, then run.
        for job_id in ids[1:]:
            await on_board(executor.board, job_id)
            executor.board.finish_current()
            done = await state_of(scheduler, job_id, JobState.SUCCEEDED)
            assert done.run_count == 1  # the taken-back staging left no run behind
        assert executor.board.order == ids
    finally:
        await scheduler.stop()


async def test_an_executor_unreachable_too_long_fails_its_running_job_and_keeps_the_queue(new_store):
    store, executor = new_store(), MemoryExecutor()
    executor.board.hold()
    scheduler = await started(engine(store, executor, executor_lost_after_s=0.3))
    try:
        running = (await scheduler.submit(sub())).job.job_id
        await on_board(executor.board, running)
        queued = (await scheduler.submit(sub())).job.job_id
        await eventually(lambda: len(executor.board.waiting), until=lambda n: n == 1, what="one staged")
        executor.unavailable = True
        executor.board.drop_stream()
        lost = await state_of(scheduler, running, JobState.FAILED)
        assert lost.error.reason == "EXECUTOR_LOST"
        assert (await scheduler.get(queued)).state is JobState.QUEUED
        executor.unavailable = False
        executor.board.restart()  # it comes back without the runs it had
        await on_board(executor.board, queued)
        executor.board.finish_current()
        await state_of(scheduler, queued, JobState.SUCCEEDED)
    finally:
        await scheduler.stop()


async def test_a_refused_run_fails_its_job_and_the_rest_go_on(held):
    scheduler, board, _, _ = held
    board.refuse["Broken"] = "INVALID_EXPERIMENT"
    first = (await scheduler.submit(sub())).job
    await on_board(board, first.job_id)
    bad = (
        await scheduler.submit(
            sub(payload=Payload(JobKind.LAB_EXPERIMENT, {**lab().body, "experiment_class": "Broken"}))
        )
    ).job
    good = (await scheduler.submit(sub())).job
    failed = await state_of(scheduler, bad.job_id, JobState.FAILED)
    assert failed.error.reason == "INVALID_EXPERIMENT"
    board.finish_current()
    await on_board(board, good.job_id)


def mains_at(revision: str, change_id: int) -> MainRevisions:
    mains = MainRevisions()
    main = MainRevision("hardware_config", revision, "ab" * 32, change_id)
    mains.apply(Snapshot(change_id, frozenset({"hardware_config"}), (main,)))
    mains.apply(CaughtUp(change_id))
    return mains


class NoCalls:
    """A pinner that must not be called for main pins."""

    calls = 0

    async def pin(self, job_id, revision_ids, overrides, creator):  # pragma: no cover - a failure
        self.calls += 1
        raise AssertionError("PinConfigs called for a main pin")

    async def close(self):
        pass


async def test_main_pins_come_from_memory_and_a_push_re_pins_the_staged_runs(new_store):
    store, executor = new_store(), MemoryExecutor()
    executor.board.hold()
    mains = mains_at("CFG-HW-20261207-00001", 1)
    scheduler = await started(
        engine(store, executor, mains=mains, pinner=NoCalls(), default_run_seconds=0.01)
    )
    try:
        ids = [(await scheduler.submit(sub())).job.job_id for _ in range(5)]
        await eventually(lambda: len(executor.board.waiting), until=lambda n: n == 4, what="four staged")
        # A push races the deep queue: what has not started is taken back and pinned again.
        mains.apply(MainRevision("hardware_config", "CFG-HW-20261207-00002", "cd" * 32, 2))
        await eventually(
            lambda: [executor.board.runs[t].request.configs[0].revision_id for t in executor.board.waiting],
            until=lambda revs: revs == ["CFG-HW-20261207-00002"] * 4,
            what="the waiting runs re-pinned to the new main",
        )
        for job_id in ids:
            await on_board(executor.board, job_id)
            executor.board.finish_current()
        done = [await state_of(scheduler, j, JobState.SUCCEEDED) for j in ids]
        assert done[0].current_run.config_revisions == {"hardware_config": "CFG-HW-20261207-00001"}
        assert {d.current_run.config_revisions["hardware_config"] for d in done[1:]} == {
            "CFG-HW-20261207-00002"
        }
        assert executor.board.order == ids
    finally:
        await scheduler.stop()


async def test_estimates_use_the_running_jobs_own_progress():
    from datetime import UTC, datetime, timedelta

    from qsched_scheduler.domain import Job, Run
    from qsched_scheduler.estimates import estimated_start

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    run = Run("t", 1, JobState.RUNNING, start_time=now - timedelta(seconds=30), progress=0.75)
    job = Job("JOB-20261207-00001", "a", "qick", 0, lab(), JobState.RUNNING, now, start_time=run.start_time)
    job.current_run = run
    # 30 s for 75 %: 10 s left, whatever the typical run says; then a typical run per job ahead.
    assert estimated_start(now, 1, job, typical=60.0) == now + timedelta(seconds=10)
    assert estimated_start(now, 3, job, typical=60.0) == now + timedelta(seconds=130)
    run.progress = 0.0  # nothing reported yet: typical run time less what has elapsed
    assert estimated_start(now, 1, job, typical=60.0) == now + timedelta(seconds=30)


async def test_a_job_that_overtook_staged_runs_just_before_a_restart_still_runs_first(new_store):
    store, executor = new_store(), MemoryExecutor()
    executor.board.hold()
    first = await started(engine(store, executor, default_run_seconds=0.01))
    ids = [(await first.submit(sub())).job.job_id for _ in range(3)]
    await eventually(lambda: len(executor.board.waiting), until=lambda n: n == 2, what="two staged")
    await first.routes.stop()  # the scheduler dies ...
    # ... having recorded a job that goes first, but not yet taken back the runs it overtakes.
    second = engine(store, executor)
    urgent = (await second.submit(sub(priority=5))).job.job_id
    board = executor.board
    assert [board.runs[t].job_id for t in board.waiting] == ids[1:], "nothing taken back before the restart"
    await started(second)
    try:
        for job_id in [ids[0], urgent, *ids[1:]]:
            await on_board(executor.board, job_id)
            executor.board.finish_current()
            await state_of(second, job_id, JobState.SUCCEEDED)
        assert executor.board.order == [ids[0], urgent, *ids[1:]]
    finally:
        await second.stop()


async def test_a_store_that_fails_for_a_while_shows_in_the_health_and_dispatch_recovers(caplog):
    """Issue 18: a dispatcher that cannot read or write its store is a reported problem (the
    service's health is NOT_SERVING), retried (one traceback in the log, then a line per
    attempt), and cleared once it has reconciled again."""
    import logging

    from qsched_core.health import Problems

    class Failing(MemoryJobStore):
        failing = True
        attempts = 0

        def running_jobs(self, *args, **kwargs):
            if self.failing:
                self.attempts += 1
                raise OSError("the database refuses")
            return super().running_jobs(*args, **kwargs)

    caplog.set_level(logging.INFO)
    store, executor, problems = Failing(), MemoryExecutor(), Problems()
    changes: list[bool] = []
    problems.subscribe(changes.append)
    scheduler = engine(store, executor, problems=problems, default_run_seconds=0.01)
    await scheduler.start()
    try:
        await eventually(lambda: changes, until=lambda c: c == [False], what="the problem reported")
        assert "dispatch to qick" in problems.current()
        await eventually(lambda: store.attempts, until=lambda n: n >= 3, timeout=30, what="3 attempts")
        store.failing = False
        await scheduler.routes.labs["qick"].connected.wait()
        assert changes == [False, True] and problems.ok
        job = (await scheduler.submit(sub())).job
        await state_of(scheduler, job.job_id, JobState.SUCCEEDED)
    finally:
        await scheduler.stop()
    dispatch = "qsched_scheduler.dispatch.lab"
    mine = [r for r in caplog.records if r.name == dispatch and r.levelno >= logging.WARNING]
    assert sum(1 for r in mine if r.exc_info) == 1, [r.getMessage() for r in mine]
    assert len(mine) >= 3


async def test_a_run_lost_on_the_board_before_its_start_arrived_fails_as_started_after_the_one_before(
    new_store,
):
    store, executor = new_store(), MemoryExecutor()
    board = executor.board
    board.hold()
    first = await started(engine(store, executor, default_run_seconds=60))
    ids = [(await first.submit(sub())).job.job_id for _ in range(3)]
    await eventually(lambda: len(board.waiting), until=lambda n: n == 2, what="two staged")
    await first.routes.stop()  # the scheduler stops hearing the executor ...
    board.finish_current()  # ... the first run ends, the second starts ...
    await on_board(board, ids[1])
    board.restart()  # ... and the executor dies with it on the board (the third is forgotten)
    second = await started(engine(store, executor, default_run_seconds=60))
    try:
        assert (await state_of(second, ids[0], JobState.SUCCEEDED)).error is None
        lost = await state_of(second, ids[1], JobState.FAILED)
        assert lost.error.reason == "EXECUTOR_LOST"
        assert lost.start_time is not None, "it reached the board: it started"
        await on_board(board, ids[2])  # never on the board before: back in the queue, then run
        board.finish_current()
        assert (await state_of(second, ids[2], JobState.SUCCEEDED)).run_count == 1
    finally:
        await second.stop()
