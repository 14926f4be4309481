"""Reservations on the memory board with a hand-moved clock: the calendar's rules (overlaps,
targets, open windows, the overrun rule, hard ends) as the queue policy's gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from qsched_core.errors import FailedPrecondition, InvalidArgument
from qsched_scheduler import reservations
from qsched_scheduler.calendar import Calendar, MemoryCalendarStore, NewWindow, ReservationGate, WindowKind
from qsched_scheduler.domain import JobKind, JobState, Payload, QueuedJob
from qsched_scheduler.policy import DeviceHoldGate, PriorityFifo, QueuePolicy
from qsched_scheduler.queue_index import DeviceQueue
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.support.memory_executor import Board, MemoryExecutor
from tests.support.waiting import eventually

T0 = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def sub(owner: str = "alice", **labels: str) -> Submission:
    body = {
        "experiment_class": "T1Experiment",
        "experiment_module": "exp.t1",
        "expt_config_json": json.dumps({}),
    }
    return Submission("qick", Payload(JobKind.LAB_EXPERIMENT, body), 0, owner, labels=labels)


class Rig:
    def __init__(self, clock: Clock, calendar: Calendar, scheduler: Scheduler, board: Board):
        self.clock, self.calendar, self.scheduler, self.board = clock, calendar, scheduler, board

    def book(self, kind: WindowKind, start: timedelta, length: timedelta, *holders: str, hard_end=False):
        new = NewWindow("qick", kind, T0 + start, T0 + start + length, tuple(holders), hard_end)
        return self.calendar.create(new, "op")

    async def at(self, offset: timedelta) -> None:
        """Move the clock to T0 + offset and let the calendar see it."""
        self.clock.now = T0 + offset
        await self.calendar.tick()

    async def submit(self, owner: str = "alice", **labels: str) -> str:
        return (await self.scheduler.submit(sub(owner, **labels))).job.job_id

    async def state(self, job_id: str, state: JobState):
        return await eventually(
            lambda: self.scheduler.get(job_id), until=lambda j: j.state is state, what=f"{job_id} {state}"
        )

    async def runs_then_finishes(self, job_id: str):
        await eventually(
            lambda: self.board.current, until=lambda c: c and self.board.runs[c].job_id == job_id
        )
        self.board.finish_current()
        return await self.state(job_id, JobState.SUCCEEDED)

    async def waits(self, job_id: str, rule: str):
        """The job is queued, not handed over, and the calendar says why (`rule`)."""
        job = await eventually(
            lambda: self.scheduler.get(job_id),
            until=lambda j: j.waiting_reason is not None and j.waiting_reason.policy == "reservations",
            what=f"{job_id} held by the calendar",
        )
        assert job.state is JobState.QUEUED and not job.staged_task_id
        assert json.loads(json.dumps(job.waiting_reason.details))["rule"] == rule
        return job


async def start_rig(run_seconds: float) -> Rig:
    """The engine on the memory board, every run held until finished; `run_seconds` the typical run."""
    clock, store, executor = Clock(), MemoryJobStore(), MemoryExecutor()
    executor.board.hold()
    calendar = Calendar(MemoryCalendarStore(), clock)
    gate = ReservationGate(calendar)
    policy = QueuePolicy(PriorityFifo(), [DeviceHoldGate(), gate])
    scheduler = Scheduler.build(
        store,
        {"qick": executor},
        page_key=b"k" * 32,
        policy=policy,
        clock=clock,
        default_run_seconds=run_seconds,
    )
    gate.typical_seconds = scheduler.estimates.typical
    reservations.wire(calendar, scheduler)
    await scheduler.start()
    await scheduler.routes.labs["qick"].connected.wait()
    return Rig(clock, calendar, scheduler, executor.board)


@pytest.fixture
async def rig():
    started = await start_rig(600)
    yield started
    await started.scheduler.stop()


@pytest.fixture
async def short_runs_rig():
    started = await start_rig(0.1)
    yield started
    await started.scheduler.stop()


# -- the calendar ------------------------------------------------------------------------------------------
def test_an_overlapping_window_is_refused_naming_the_one_it_overlaps():
    calendar = Calendar(MemoryCalendarStore(), Clock())
    first = calendar.create(
        NewWindow("qick", WindowKind.EXCLUSIVE, T0 + HOUR, T0 + 3 * HOUR, ("alice",)), "alice"
    )
    with pytest.raises(FailedPrecondition) as refused:
        calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0 + 2 * HOUR, T0 + 4 * HOUR), "op")
    assert refused.value.reason == "RESERVATION_OVERLAP" and first.reservation_id in str(refused.value)
    # Back to back is no overlap; another device has its own calendar.
    calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0 + 3 * HOUR, T0 + 4 * HOUR), "op")
    calendar.create(NewWindow("other", WindowKind.MAINTENANCE, T0 + 2 * HOUR, T0 + 4 * HOUR), "op")
    calendar.cancel(first.reservation_id, "alice")
    calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0 + 2 * HOUR, T0 + 3 * HOUR), "op")
    with pytest.raises(InvalidArgument):
        calendar.create(NewWindow("qick", WindowKind.EXCLUSIVE, T0 + 5 * HOUR, T0 + 5 * HOUR, ("a",)), "a")


def test_windows_survive_a_reload_from_the_store():
    store, clock = MemoryCalendarStore(), Clock()
    calendar = Calendar(store, clock)
    kept = calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0 + HOUR, T0 + 2 * HOUR), "op")
    gone = calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0 + 3 * HOUR, T0 + 4 * HOUR), "op")
    calendar.cancel(gone.reservation_id, "op")
    again = Calendar(store, clock)
    again.load()
    assert [w.reservation_id for w in again.windows("qick")] == [kept.reservation_id]


# -- the gate on the engine --------------------------------------------------------------------------------
async def test_inside_an_exclusive_window_only_the_holders_jobs_start(rig: Rig):
    window = rig.book(WindowKind.EXCLUSIVE, timedelta(0), HOUR, "alice")
    await rig.at(timedelta(0))
    bob = await rig.submit("bob")
    held = await rig.waits(bob, "open-window")
    assert held.estimated_start_time == T0 + HOUR  # not before the window ends
    alice = await rig.submit("alice")
    done = await rig.runs_then_finishes(alice)
    assert window.reservation_id in done.current_run.reason.summary
    assert done.current_run.reason.details["reservations"]["rule"] == "inside-window"
    assert (await rig.scheduler.get(bob)).state is JobState.QUEUED  # alice's ran while bob's waited
    await rig.at(HOUR)  # the window ends: the normal queue runs again
    ran = await rig.runs_then_finishes(bob)
    assert rig.board.order == [alice, bob] and "window" not in ran.current_run.reason.summary


async def test_nothing_starts_in_maintenance(rig: Rig):
    rig.book(WindowKind.MAINTENANCE, timedelta(0), HOUR)
    calibration = rig.book(WindowKind.CALIBRATION, HOUR, HOUR)
    await rig.at(timedelta(0))
    plain = await rig.submit("alice")
    cal = await rig.submit("op", calibration="true")
    await rig.waits(plain, "open-window")
    await rig.waits(cal, "open-window")
    await rig.at(HOUR)  # the calibration window opens: only the calibration job starts
    ran = await rig.runs_then_finishes(cal)
    assert calibration.reservation_id in ran.current_run.reason.summary
    await rig.waits(plain, "open-window")
    await rig.at(2 * HOUR)
    await rig.runs_then_finishes(plain)
    assert rig.board.order == [cal, plain]


async def test_a_job_that_would_overrun_an_upcoming_window_waits(rig: Rig):
    # Typical run 600 s (the default: nothing ran yet); bob's window opens in 5 minutes.
    rig.book(WindowKind.EXCLUSIVE, timedelta(minutes=5), HOUR, "bob")
    alice = await rig.submit("alice")
    job = await rig.waits(alice, "overrun")
    assert job.waiting_reason.details["estimated_run_seconds"] == 600
    assert job.estimated_start_time == T0 + timedelta(minutes=5) + HOUR
    bob = await rig.submit("bob")  # the holder's job is not kept out of the holder's window
    await rig.state(bob, JobState.RUNNING)
    await rig.at(timedelta(minutes=4))  # it took 4 minutes: now the typical run
    await rig.runs_then_finishes(bob)
    await rig.waits(alice, "overrun")  # 4 more minutes would still overrun
    await rig.at(timedelta(minutes=5))
    await rig.waits(alice, "open-window")
    await rig.at(timedelta(minutes=5) + HOUR)
    await rig.runs_then_finishes(alice)


async def test_a_queued_jobs_estimate_skips_a_window_its_turn_would_fall_into(rig: Rig):
    # Typical run 600 s: alice's first runs now, her second is next, her third would start at
    # +20 min, inside bob's window (+15 min for an hour): it is estimated to start when that ends.
    jobs = [await rig.submit("alice") for _ in range(3)]
    await rig.state(jobs[0], JobState.RUNNING)
    before = await rig.scheduler.get(jobs[2])
    assert before.estimated_start_time == T0 + timedelta(minutes=20)
    rig.book(WindowKind.EXCLUSIVE, timedelta(minutes=15), HOUR, "bob")
    after = await rig.scheduler.get(jobs[2])
    assert after.waiting_reason is None or after.waiting_reason.policy != "reservations"  # not held yet
    assert after.estimated_start_time == T0 + timedelta(minutes=15) + HOUR


async def test_a_job_targeting_a_reservation_waits_until_it_opens(rig: Rig):
    window = rig.book(WindowKind.EXCLUSIVE, 2 * HOUR, HOUR, "alice")
    target = await rig.submit("alice", reservation=window.reservation_id)
    now = await rig.submit("alice")  # the same user's untargeted job runs in the normal queue
    await rig.runs_then_finishes(now)
    await rig.waits(target, "target")
    await rig.at(2 * HOUR)
    ran = await rig.runs_then_finishes(target)
    assert window.reservation_id in ran.current_run.reason.summary


async def test_a_hard_end_cancels_the_windows_running_job_and_a_soft_end_lets_it_finish(rig: Rig):
    rig.book(WindowKind.EXCLUSIVE, timedelta(0), HOUR, "alice", hard_end=True)
    rig.book(WindowKind.EXCLUSIVE, HOUR, HOUR, "bob")
    await rig.at(timedelta(0))
    hard = await rig.submit("alice")
    await rig.state(hard, JobState.RUNNING)  # started inside the window
    await rig.at(HOUR)
    cancelled = await rig.state(hard, JobState.CANCELLED)
    assert "hard end" in cancelled.error.message
    soft = await rig.submit("bob")
    await eventually(lambda: rig.board.current, until=lambda c: c and rig.board.runs[c].job_id == soft)
    await rig.at(2 * HOUR)  # bob's window ends softly: his run goes on
    nxt = await rig.submit("carol")
    assert (await rig.scheduler.get(soft)).state is JobState.RUNNING
    rig.board.finish_current()
    await rig.state(soft, JobState.SUCCEEDED)
    await rig.runs_then_finishes(nxt)


async def test_a_window_opening_takes_back_runs_staged_for_others(rig: Rig):
    first = await rig.submit("alice")
    await eventually(lambda: rig.board.current, what="alice's first on the board")
    staged = await rig.submit("alice")
    await eventually(lambda: rig.board.waiting, until=lambda w: len(w) == 1, what="a run staged")
    # Booked now, opening at once: the staged run is alice's, the window bob's.
    rig.book(WindowKind.EXCLUSIVE, timedelta(0), HOUR, "bob")
    await eventually(lambda: rig.board.waiting, until=lambda w: w == [], what="the staged run taken back")
    await rig.waits(staged, "open-window")
    rig.board.finish_current()
    await rig.state(first, JobState.SUCCEEDED)
    bob = await rig.submit("bob")
    await rig.runs_then_finishes(bob)
    assert rig.board.order == [first, bob]  # alice's staged run never started in bob's window


async def test_close_to_an_opening_a_run_it_excludes_is_not_left_staged_behind_another(short_runs_rig):
    """A run staged behind another starts when that one ends: if it overran its estimate, inside
    the window. EDGE_GUARD before the opening such runs are taken back; they start on an idle board."""
    rig = short_runs_rig
    rig.book(WindowKind.EXCLUSIVE, HOUR, HOUR, "bob")
    await rig.at(HOUR - timedelta(seconds=10))
    first = await rig.submit()
    second = await rig.submit()
    await eventually(lambda: rig.board.waiting, until=lambda w: len(w) == 1, what="the second staged")
    await rig.at(HOUR - timedelta(seconds=1.5))  # the estimate (0.1 s) still fits before the opening
    await eventually(lambda: rig.board.waiting, until=lambda w: w == [], what="the staged run taken back")
    held = await rig.waits(second, "edge")
    assert "only on an idle board" in held.waiting_reason.summary
    await rig.runs_then_finishes(first)  # it ran 8.5 s by the clock: now the estimate overruns
    await rig.waits(second, "overrun")
    await rig.at(2 * HOUR)  # the window ends
    await rig.runs_then_finishes(second)
    assert rig.board.order == [first, second]


def test_the_edge_guard_holds_a_job_only_behind_other_runs_and_only_close_to_the_opening():
    calendar = Calendar(MemoryCalendarStore(), Clock())
    calendar.create(
        NewWindow("qick", WindowKind.EXCLUSIVE, T0 + timedelta(seconds=1), T0 + HOUR, ("bob",)), "op"
    )
    gate = ReservationGate(calendar, typical_seconds=lambda device: 0.1)
    alices = QueuedJob("JOB-1", "qick", 0, 1, "alice", JobKind.LAB_EXPERIMENT)
    bobs = QueuedJob("JOB-2", "qick", 0, 2, "bob", JobKind.LAB_EXPERIMENT)
    idle = SimpleNamespace(device="qick", now=T0, on_board=[])
    busy = SimpleNamespace(device="qick", now=T0, on_board=["JOB-0"])
    assert gate.holds(alices, idle) is None  # 0.1 s fits before the opening, on an idle board
    assert gate.holds(alices, busy).details["rule"] == "edge"
    assert gate.holds_rest(alices, busy)  # bob's job behind it does not jump ahead meanwhile
    assert not gate.holds_rest(alices, idle)
    assert gate.holds(bobs, busy) is None  # the window admits bob
    late = SimpleNamespace(device="qick", now=T0 + timedelta(seconds=0.6), on_board=[])
    assert gate.holds(alices, late).details["rule"] == "edge"  # 0.3 s to spare: too close to start
    earlier = SimpleNamespace(device="qick", now=T0 - timedelta(seconds=5), on_board=["JOB-0"])
    assert gate.holds(alices, earlier) is None  # further than EDGE_GUARD from the opening


def test_a_maintenance_window_stops_the_walk_an_exclusive_one_does_not():
    calendar = Calendar(MemoryCalendarStore(), Clock())
    calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0, T0 + HOUR), "op")
    calendar.create(NewWindow("qick", WindowKind.EXCLUSIVE, T0 + HOUR, T0 + 2 * HOUR, ("bob",)), "op")
    gate = ReservationGate(calendar, typical_seconds=lambda device: 60.0)
    alices = QueuedJob("JOB-1", "qick", 0, 1, "alice", JobKind.LAB_EXPERIMENT)
    inside = SimpleNamespace(device="qick", now=T0, on_board=[])
    assert gate.holds(alices, inside).details["rule"] == "open-window"
    assert gate.holds_rest(alices, inside)  # nothing behind it can start in maintenance either
    before = SimpleNamespace(device="qick", now=T0 - timedelta(seconds=30), on_board=[])
    assert gate.holds(alices, before).details["rule"] == "overrun" and gate.holds_rest(alices, before)
    in_bobs = SimpleNamespace(device="qick", now=T0 + HOUR, on_board=[])
    assert gate.holds(alices, in_bobs) is not None and not gate.holds_rest(alices, in_bobs)  # bob's may


def test_inside_an_exclusive_window_the_walk_goes_straight_to_the_holders_jobs():
    calendar = Calendar(MemoryCalendarStore(), Clock())
    calendar.create(NewWindow("qick", WindowKind.EXCLUSIVE, T0, T0 + HOUR, ("alice",)), "op")
    asked: list[str] = []

    class CountingGate(ReservationGate):
        def holds(self, job, view):  # type: ignore[no-untyped-def]
            asked.append(job.job_id)
            return super().holds(job, view)

    policy = QueuePolicy(PriorityFifo(), [DeviceHoldGate(), CountingGate(calendar)])
    queue = DeviceQueue(policy.key)
    for n in range(1000):
        queue.put(QueuedJob(f"JOB-B{n}", "qick", 0, n, "bob", JobKind.LAB_EXPERIMENT))
    queue.put(QueuedJob("JOB-A", "qick", 0, 1000, "alice", JobKind.LAB_EXPERIMENT))
    queue.put(QueuedJob("JOB-A2", "qick", 0, 1001, "alice", JobKind.LAB_EXPERIMENT, staged_task_id="t"))
    view = SimpleNamespace(
        device="qick",
        now=T0 + timedelta(minutes=1),
        hold=None,
        on_board=[],
        waiting=queue.unstaged,
        waiting_of=queue.unstaged_of,
        ahead_of=lambda job_id: queue.position(job_id) - 1,
    )
    assert [d.job.job_id for d in policy.next_runs(view, 2)] == ["JOB-A"]  # A2 is already staged
    assert asked == ["JOB-A"]  # bob's 1,000 were not asked about one by one
    queue.remove("JOB-A")
    assert list(queue.unstaged_of({"alice"})) == [] and len(list(queue.unstaged_of({"bob"}))) == 1000
    view.now = T0 + 2 * HOUR  # the window is over: everyone's jobs again, in order
    assert [d.job.job_id for d in policy.next_runs(view, 2)] == ["JOB-B0", "JOB-B1"]


async def test_after_a_scheduler_restart_runs_staged_before_a_window_opened_are_taken_back():
    clock, store, executor, windows = Clock(), MemoryJobStore(), MemoryExecutor(), MemoryCalendarStore()
    executor.board.hold()

    async def engine() -> tuple[Scheduler, Calendar]:
        calendar = Calendar(windows, clock)
        calendar.load()
        gate = ReservationGate(calendar)
        policy = QueuePolicy(PriorityFifo(), [DeviceHoldGate(), gate])
        scheduler = Scheduler.build(
            store, {"qick": executor}, page_key=b"k" * 32, policy=policy, clock=clock, default_run_seconds=1
        )
        gate.typical_seconds = scheduler.estimates.typical
        reservations.wire(calendar, scheduler)
        await scheduler.start()
        await scheduler.routes.labs["qick"].connected.wait()
        return scheduler, calendar

    first, calendar = await engine()
    running = (await first.submit(sub("alice"))).job.job_id
    staged = (await first.submit(sub("alice"))).job.job_id
    await eventually(lambda: executor.board.waiting, until=lambda w: len(w) == 1, what="one staged")
    await first.routes.stop()  # the scheduler dies; meanwhile bob's window is booked and opens
    calendar.create(NewWindow("qick", WindowKind.EXCLUSIVE, T0 + HOUR, T0 + 2 * HOUR, ("bob",)), "op")
    clock.now = T0 + HOUR
    second, _ = await engine()
    rig = Rig(clock, calendar, second, executor.board)
    try:
        await eventually(
            lambda: executor.board.waiting, until=lambda w: w == [], what="the staged run taken back"
        )
        await rig.waits(staged, "open-window")
        executor.board.finish_current()  # alice's running job was left to finish
        await rig.state(running, JobState.SUCCEEDED)
        bob = await rig.submit("bob")
        await rig.runs_then_finishes(bob)
        assert executor.board.order == [running, bob]
    finally:
        await second.stop()
