"""Yielding at safe points, the scheduler's side (issue 14, item 4), on the memory board with the
memory store, SQLite and PostgreSQL: a running job that allows it is asked to yield when a
higher-priority or calibration job arrives and its device allows that; its run ends PREEMPTED, the
job goes back to its place in the queue and its next run continues from the saved rounds (or
restarts), with the decision in the run's reason. By default nothing is ever interrupted."""

from __future__ import annotations

import json

import pytest

from qsched_core.execution import CancelRuns, EnqueueRuns
from qsched_scheduler.calibration import definitions as defs
from qsched_scheduler.domain import PREEMPTED, JobKind, JobState, Payload, yields_at_safe_points
from qsched_scheduler.errors import InvalidArgument
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.validation import Submission
from tests.support.memory_executor import Board, MemoryExecutor
from tests.support.waiting import eventually

ALL = frozenset({"calibration", "priority"})


def lab(yields: bool = True) -> Payload:
    body = {
        "experiment_class": "AmplitudeRabiExperiment",
        "experiment_module": "qsched_hardware.experiments",
        "expt_config_json": json.dumps({"rounds": 8}),
    }
    if yields:
        body["yield_at_safe_points"] = True
    return Payload(JobKind.LAB_EXPERIMENT, body)


def sub(priority: int = 0, yields: bool = False, labels: dict | None = None) -> Submission:
    return Submission("qick", lab(yields), priority, "alice", labels=labels)


async def engine(store, board_hold: bool = True, yielding=None) -> tuple[Scheduler, Board]:
    executor = MemoryExecutor()
    if board_hold:
        executor.board.hold()
    scheduler = Scheduler.build(
        store, {"qick": executor}, page_key=b"k" * 32, default_run_seconds=0.01, yielding=yielding
    )
    await scheduler.start()
    await scheduler.routes.labs["qick"].connected.wait()
    return scheduler, executor.board


async def on_board(board: Board, job_id: str, nth: int = 1) -> None:
    await eventually(
        lambda: board.current and board.order[-1] == job_id and board.order.count(job_id) == nth,
        what=f"{job_id} on the board (run {nth})",
    )


async def runs_of(scheduler: Scheduler, job_id: str):
    return (await scheduler.list_runs(job_id, 100, "", full=True))[0]


async def yielded_run(scheduler: Scheduler, job_id: str):
    """The job's first run, once its yield is applied here (the board may be ahead of the scheduler)."""
    runs = await eventually(
        lambda: runs_of(scheduler, job_id), until=lambda runs: runs[0].error is not None, what="yielded"
    )
    return runs[0]


def preempts(board: Board) -> list[CancelRuns]:
    return [c for c in board.commands if isinstance(c, CancelRuns) and c.preempt]


async def test_a_yielded_job_goes_back_to_its_place_and_its_next_run_continues(new_store):
    scheduler, board = await engine(new_store(), yielding=lambda device: ALL)
    try:
        long = (await scheduler.submit(sub(yields=True))).job
        await on_board(board, long.job_id)
        behind = [(await scheduler.submit(sub())).job for _ in range(2)]
        urgent = (await scheduler.submit(sub(priority=5))).job
        await on_board(board, urgent.job_id)  # the long job yielded to it
        assert [c.task_ids for c in preempts(board)] == [(long.current_run.task_id,)]
        await eventually(lambda: scheduler.get(urgent.job_id), until=lambda j: j.state is JobState.RUNNING)
        job = await scheduler.get(long.job_id)
        assert job.state is JobState.QUEUED and job.error.reason == PREEMPTED
        assert job.queue_position == 1, "back at its place: first among the jobs behind the urgent one"
        assert job.task_id != long.current_run.task_id, "queued again with its next run's task id"
        first = await yielded_run(scheduler, long.job_id)
        assert first.state is JobState.CANCELLED and first.error.reason == PREEMPTED
        assert first.data is not None and first.summary["resumable"] == 1.0
        assert "priority 5 > 0" in first.error.message

        board.finish_current()  # the urgent job
        await on_board(board, long.job_id, nth=2)
        runs = await runs_of(scheduler, long.job_id)
        second = runs[1]
        assert second.task_id == job.task_id  # the id the handle had while it waited
        assert second.reason is not None and "continues from the 1 round(s)" in second.reason.summary
        assert second.reason.details["resume"]["from_task_id"] == first.task_id
        request = next(r for r in board.requests if r.task_id == second.task_id)
        assert request.resume_from == first.data
        running = await eventually(
            lambda: scheduler.get(long.job_id), until=lambda j: j.state is JobState.RUNNING, what="running"
        )
        assert running.error is None  # running again: the reason it was back in the queue is spent
        for job_id in [long.job_id, *(j.job_id for j in behind)]:
            await on_board(board, job_id, nth=board.order.count(job_id) or 1)
            board.finish_current()
        assert board.order == [long.job_id, urgent.job_id, long.job_id, *(j.job_id for j in behind)]
        done = await eventually(
            lambda: scheduler.get(long.job_id), until=lambda j: j.state is JobState.SUCCEEDED, what="done"
        )
        assert done.current_run.task_id == second.task_id
    finally:
        await scheduler.stop()


async def test_a_job_that_cannot_continue_restarts_and_its_reason_says_so(new_store):
    scheduler, board = await engine(new_store(), yielding=lambda device: ALL)
    board.resumable = False
    try:
        long = (await scheduler.submit(sub(yields=True))).job
        await on_board(board, long.job_id)
        calibration = (await scheduler.submit(sub(labels={"calibration": "rabi"}))).job
        await on_board(board, calibration.job_id)  # a calibration is due: same priority, still first
        first = await yielded_run(scheduler, long.job_id)
        assert "calibration rabi" in first.error.message and "restarts" in first.error.message
        board.finish_current()
        await on_board(board, long.job_id, nth=2)
        second = (await runs_of(scheduler, long.job_id))[1]
        assert "restarts after yielding" in second.reason.summary
        assert next(r for r in board.requests if r.task_id == second.task_id).resume_from is None
    finally:
        await scheduler.stop()


@pytest.mark.parametrize(
    "yielding, yields",
    [(None, True), (lambda device: ALL, False), (lambda device: frozenset({"calibration"}), True)],
    ids=["device default", "job default", "device yields to calibrations only"],
)
async def test_by_default_a_running_job_is_never_interrupted(new_store, yielding, yields):
    scheduler, board = await engine(new_store(), yielding=yielding)
    try:
        long = (await scheduler.submit(sub(yields=yields))).job
        await on_board(board, long.job_id)
        urgent = (await scheduler.submit(sub(priority=5))).job
        # Observed later than any yield would have been asked: the urgent job staged behind it.
        urgent = await eventually(
            lambda: scheduler.get(urgent.job_id), until=lambda j: j.staged_task_id, what="urgent staged"
        )
        await eventually(lambda: urgent.staged_task_id in board.waiting, what="urgent waits on the board")
        assert any(
            urgent.staged_task_id in [r.task_id for r in e.runs]
            for e in board.commands
            if isinstance(e, EnqueueRuns)
        )
        assert preempts(board) == [] and board.current == long.current_run.task_id
        board.finish_current()
        await on_board(board, urgent.job_id)
        await eventually(
            lambda: scheduler.get(long.job_id), until=lambda j: j.state is JobState.SUCCEEDED, what="done"
        )
    finally:
        await scheduler.stop()


def test_the_calibration_definitions_say_what_a_device_yields_to():
    assert defs.parse("calibrations: {}").yield_to_on("qick") == frozenset()  # the default: never
    both = defs.parse("yield_to: [calibration, priority]\ncalibrations: {}")
    assert both.yield_to_on("qick") == ALL
    per_device = defs.parse("yield_to: {default: [], qick: [calibration]}\ncalibrations: {}")
    assert per_device.yield_to_on("qick") == {"calibration"} and per_device.yield_to_on("other") == set()
    with pytest.raises(InvalidArgument, match="yield_to"):
        defs.parse("yield_to: [always]\ncalibrations: {}")


def test_the_job_setting_goes_through_the_contract_and_is_off_unless_asked():
    from qsched_scheduler.convert import payload_from_pb, payload_to_pb

    asked = payload_from_pb(payload_to_pb(lab(yields=True)))
    assert asked.body["yield_at_safe_points"] is True and yields_at_safe_points(asked)
    default = payload_from_pb(payload_to_pb(lab(yields=False)))
    assert "yield_at_safe_points" not in default.body and not yields_at_safe_points(default)


def test_the_store_puts_a_yielded_job_back_at_its_place_unless_its_cancel_was_asked(new_store):
    from datetime import UTC, datetime

    from qsched_core.execution import Cancelled, DataRef, ExecutionUpdate
    from qsched_scheduler.dispatch.lab import to_run_update
    from qsched_scheduler.domain import NewJob, Reason
    from qsched_scheduler.store.base import Claim, RunUpdate, StageRequest

    store, now = new_store(), datetime(2026, 12, 7, 12, tzinfo=UTC)
    jobs = [
        o.change.job for o in store.submit_many([NewJob("alice", "qick", 0, lab()) for _ in range(2)], now)
    ]
    yielded = Cancelled(
        "yielded at a safe point", 3, DataRef("f.h5", "ab", 9), preempted=True, resumable=True
    )
    for i, job in enumerate(jobs):
        task = f"t-{i}"
        store.stage(
            [StageRequest(job.job_id, Claim(task, {"hardware_config": "CFG-1"}, Reason("p", "s")))], now
        )
        store.apply_updates([(task, RunUpdate(1, started=True, message="started"))], now)
        if i == 1:
            store.request_cancel(job.job_id, "user asked", now)
        store.apply_updates([(task, to_run_update(ExecutionUpdate(task, 2, 0.0, yielded)))], now)
    back, cancelled = store.get(jobs[0].job_id), store.get(jobs[1].job_id)
    assert back.state is JobState.QUEUED and back.queue_order == jobs[0].queue_order
    assert back.error.reason == PREEMPTED and back.start_time is None and back.end_time is None
    run = back.current_run
    assert run.state is JobState.CANCELLED and run.data == DataRef("f.h5", "ab", 9)
    assert run.summary == {"rounds_done": 3.0, "resumable": 1.0} and run.config_revisions == {
        "hardware_config": "CFG-1"
    }
    # What the queue index is rebuilt from after a restart knows it was preempted.
    assert [(q.job_id, q.preempted) for q in store.queued_jobs()] == [(back.job_id, True)]
    assert store.queued_count("qick") == 1 and store.queue_position(back) == 1
    assert cancelled.state is JobState.CANCELLED


async def test_a_running_job_yields_to_the_recalibration_the_next_job_needs():
    """The whole calibration path (issue 14 item 3 + 4): Rabi expires while a yieldable job runs and
    another waits; the recalibration the waiting job needs is queued and the running job yields to it
    (the device yields to calibrations), then continues before the job behind it."""
    from datetime import timedelta

    from tests.scheduler.unit.test_calibration import CHAIN, Rig, fresh

    rig = Rig()
    rig.configs.content = ("yield_to: [calibration]\n" + CHAIN.format(on_failure="hold")).encode()
    for name, fresh_for in (("qubit_freq", 3600), ("rabi", 1800)):
        rig.states.put_calibration_state(fresh(name, rig.clock, 0, fresh_for))
    async with rig:
        scheduler, board = rig.scheduler, rig.board
        long = (await scheduler.submit(sub(yields=True))).job
        await on_board(board, long.job_id)
        waiting = (await scheduler.submit(sub())).job
        await eventually(lambda: scheduler.get(waiting.job_id), until=lambda j: j.staged_task_id)
        rig.clock.now += timedelta(seconds=1801)  # Rabi is stale now; spectroscopy is still fresh
        rig.calibrations.tick()  # the periodic check: the staged job is taken back and waits for Rabi
        await eventually(lambda: len(rig.calibration_jobs()) == 1, what="the recalibration handed over")
        (rabi,) = rig.calibration_jobs()
        await on_board(board, rabi)  # the long job yielded to it
        first = await yielded_run(scheduler, long.job_id)
        assert first.error.reason == PREEMPTED and f"calibration rabi ({rabi}) is due" in first.error.message
        await rig.finish()  # Rabi passes
        await on_board(board, long.job_id, nth=2)
        second = (await runs_of(scheduler, long.job_id))[1]
        assert "continues from the 1 round(s)" in second.reason.summary
        await rig.finish()
        await on_board(board, waiting.job_id)
        assert board.order == [long.job_id, rabi, long.job_id, waiting.job_id]


async def test_after_a_scheduler_restart_a_yielded_job_still_continues_from_its_rounds(new_store):
    store, executor = new_store(), MemoryExecutor()
    executor.board.hold()
    build = dict(page_key=b"k" * 32, default_run_seconds=0.01, yielding=lambda device: ALL)
    first = Scheduler.build(store, {"qick": executor}, **build)
    await first.start()
    await first.routes.labs["qick"].connected.wait()
    long = (await first.submit(sub(yields=True))).job
    await on_board(executor.board, long.job_id)
    urgent = (await first.submit(sub(priority=5))).job
    await on_board(executor.board, urgent.job_id)
    await eventually(lambda: first.get(long.job_id), until=lambda j: j.state is JobState.QUEUED)
    await first.stop()  # the scheduler goes; the urgent run goes on
    second = Scheduler.build(store, {"qick": executor}, **build)
    await second.start()
    try:
        await second.routes.labs["qick"].connected.wait()
        await on_board(executor.board, urgent.job_id)
        executor.board.finish_current()
        await on_board(executor.board, long.job_id, nth=2)
        resumed = (await runs_of(second, long.job_id))[-1]
        assert "continues from the 1 round(s)" in resumed.reason.summary
        assert (
            next(r for r in executor.board.requests if r.task_id == resumed.task_id).resume_from is not None
        )
    finally:
        await second.stop()
