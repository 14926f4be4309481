"""Sessions on the memory board with a hand-moved clock: back to back while others wait, close,
cancel, idle timeout, the abort policy, composition with a maintenance window, a reload."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from qsched_core.errors import FailedPrecondition
from qsched_core.execution import Failed
from qsched_scheduler import reservations
from qsched_scheduler.calendar import Calendar, MemoryCalendarStore, NewWindow, ReservationGate, WindowKind
from qsched_scheduler.domain import JobKind, JobState, Payload
from qsched_scheduler.policy import DeviceHoldGate, PriorityFifo, QueuePolicy
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.sessions import FailurePolicy, MemorySessionStore, SessionGate, Sessions, SessionState
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.support.memory_executor import MemoryExecutor
from tests.support.waiting import eventually

T0 = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def sub(owner: str, session: str = "", priority: int = 0) -> Submission:
    body = {
        "experiment_class": "T1Experiment",
        "experiment_module": "exp.t1",
        "expt_config_json": json.dumps({}),
    }
    labels = {"session": session} if session else {}
    return Submission("qick", Payload(JobKind.LAB_EXPERIMENT, body), priority, owner, labels=labels)


class Rig:
    def __init__(self, store: MemorySessionStore | None = None) -> None:
        self.clock, self.executor = Clock(), MemoryExecutor()
        self.executor.board.hold()
        self.board = self.executor.board
        self.session_store = store or MemorySessionStore()
        self.sessions = Sessions(self.session_store, self.clock)
        self.sessions.load()
        self.calendar = Calendar(MemoryCalendarStore(), self.clock)
        gates = [DeviceHoldGate(), ReservationGate(self.calendar), SessionGate(self.sessions)]
        self.scheduler = Scheduler.build(
            MemoryJobStore(),
            {"qick": self.executor},
            page_key=b"k" * 32,
            policy=QueuePolicy(PriorityFifo(), gates),
            clock=self.clock,
            default_run_seconds=60,
        )
        reservations.wire(self.calendar, self.scheduler)
        reservations.wire_sessions(self.sessions, self.scheduler)

    async def start(self) -> Rig:
        await self.scheduler.start()
        await self.scheduler.routes.labs["qick"].connected.wait()
        return self

    def open(self, owner: str = "alice", idle=10 * MINUTE, policy=FailurePolicy.CONTINUE) -> str:
        return self.sessions.open("qick", owner, timedelta(hours=1), idle, policy).session_id

    async def tick(self, by: timedelta = timedelta(0)) -> None:
        self.clock.now += by
        await self.calendar.tick()
        await self.sessions.tick()

    async def submit(self, owner: str, session: str = "", priority: int = 0) -> str:
        return (await self.scheduler.submit(sub(owner, session, priority))).job.job_id

    async def state(self, job_id: str, state: JobState):
        return await eventually(
            lambda: self.scheduler.get(job_id), until=lambda j: j.state is state, what=f"{job_id} {state}"
        )

    async def on_board(self, job_id: str) -> None:
        await eventually(
            lambda: self.board.current, until=lambda c: c and self.board.runs[c].job_id == job_id, what=job_id
        )
        await self.state(job_id, JobState.RUNNING)

    async def runs_then_finishes(self, job_id: str, body=None, end=JobState.SUCCEEDED):
        await self.on_board(job_id)
        self.board.finish_current(body)
        return await self.state(job_id, end)

    async def waits(self, job_id: str, policy: str = "sessions"):
        job = await eventually(
            lambda: self.scheduler.get(job_id),
            until=lambda j: j.waiting_reason is not None and j.waiting_reason.policy == policy,
            what=f"{job_id} held by {policy}",
        )
        assert job.state is JobState.QUEUED and not job.staged_task_id
        return job


@pytest.fixture
async def rig():
    rig = await Rig().start()
    yield rig
    await rig.scheduler.stop()


async def test_a_session_runs_its_jobs_back_to_back_while_others_wait_and_close_lets_them_finish(rig: Rig):
    session = rig.open("alice")
    bob = await rig.submit("bob", priority=50)  # even a higher priority waits for the session
    held = await rig.waits(bob)
    assert session in held.waiting_reason.summary and "alice" in held.waiting_reason.summary
    first = await rig.submit("alice", session)
    ran = await rig.runs_then_finishes(first)
    assert ran.current_run.reason.details["sessions"]["session_id"] == session
    await rig.tick(2 * MINUTE)  # alice looks at her data: the device waits for her (idle < timeout)
    await rig.waits(bob)
    rest = [await rig.submit("alice", session) for _ in range(2)]
    await rig.on_board(rest[0])
    rig.sessions.close(session)  # her queued ones still run, then the device goes back to the queue
    assert rig.sessions.get(session).state is SessionState.CLOSING
    rig.board.finish_current()
    await rig.runs_then_finishes(rest[1])
    await rig.tick()
    assert rig.sessions.get(session) is None
    await rig.runs_then_finishes(bob)
    assert rig.board.order == [first, *rest, bob]
    ended = rig.session_store.rows[session]
    assert ended.state is SessionState.ENDED and ended.end_reason == "closed"


async def test_the_idle_timeout_ends_a_session(rig: Rig):
    session = rig.open("alice", idle=5 * MINUTE)
    bob = await rig.submit("bob")
    await rig.waits(bob)
    await rig.tick(4 * MINUTE)
    await rig.waits(bob)
    await rig.tick(MINUTE)
    await rig.runs_then_finishes(bob)
    assert rig.session_store.rows[session].end_reason == "timed out"


async def test_one_session_per_device(rig: Rig):
    session = rig.open("alice")
    with pytest.raises(FailedPrecondition) as refused:
        rig.open("bob")
    assert refused.value.reason == "DEVICE_IN_SESSION" and session in str(refused.value)


async def test_cancel_drops_the_queued_session_jobs(rig: Rig):
    session = rig.open("alice")
    running = await rig.submit("alice", session)
    await rig.on_board(running)
    queued = [await rig.submit("alice", session) for _ in range(3)]
    bob = await rig.submit("bob")
    await rig.sessions.cancel(session)
    for job_id in queued:
        await rig.state(job_id, JobState.CANCELLED)
    rig.board.finish_current()  # the running one was left to finish
    await rig.state(running, JobState.SUCCEEDED)
    await rig.runs_then_finishes(bob)
    assert rig.board.order == [running, bob]


async def test_the_abort_policy_cancels_the_session_when_a_job_fails(rig: Rig):
    session = rig.open("alice", policy=FailurePolicy.ABORT)
    failing = await rig.submit("alice", session)
    await rig.on_board(failing)
    later = await rig.submit("alice", session)
    bob = await rig.submit("bob")
    await rig.runs_then_finishes(failing, Failed("PROGRAM_ERROR", "boom"), JobState.FAILED)
    await rig.tick()
    await rig.state(later, JobState.CANCELLED)
    await rig.runs_then_finishes(bob)
    assert rig.session_store.rows[session].end_reason.startswith("aborted")


async def test_a_maintenance_window_stops_session_jobs_too(rig: Rig):
    rig.calendar.create(NewWindow("qick", WindowKind.MAINTENANCE, T0, T0 + 10 * MINUTE), "op")
    await rig.tick()
    session = rig.open("alice")
    job = await rig.submit("alice", session)
    await rig.waits(job, "reservations")
    await rig.tick(10 * MINUTE)
    await rig.runs_then_finishes(job)


async def test_open_sessions_are_found_again_after_a_restart():
    store = MemorySessionStore()
    first = await Rig(store).start()
    session = first.open("alice")
    await first.scheduler.stop()
    second = await Rig(store).start()
    try:
        bob = await second.submit("bob")
        await second.waits(bob)
        mine = await second.submit("alice", session)
        await second.runs_then_finishes(mine)
        await second.sessions.cancel(session)
        await second.runs_then_finishes(bob)
    finally:
        await second.scheduler.stop()
