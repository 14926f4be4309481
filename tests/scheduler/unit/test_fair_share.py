"""Fair share on the memory board with a hand-moved clock: decayed usage, one user's backlog
interleaved with another's jobs, the standing in the reasons, FIFO on devices not set to it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from qsched_scheduler.domain import JobKind, JobState, Payload
from qsched_scheduler.fair_share import FairShare, Usage, UsedTime, fair_share_devices
from qsched_scheduler.policy import DeviceHoldGate, QueuePolicy
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.support.memory_executor import MemoryExecutor
from tests.support.waiting import eventually

T0 = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
RUN = timedelta(seconds=60)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def sub(owner: str, priority: int = 0) -> Submission:
    body = {
        "experiment_class": "T1Experiment",
        "experiment_module": "exp.t1",
        "expt_config_json": json.dumps({}),
    }
    return Submission("qick", Payload(JobKind.LAB_EXPERIMENT, body), priority, owner)


def test_usage_decays_with_its_half_life():
    clock = Clock()
    usage = Usage(clock, half_life=timedelta(hours=1))
    usage.add(UsedTime("alice", "qick", T0 - timedelta(hours=1), 100.0))
    usage.add(UsedTime("alice", "qick", T0, 10.0))
    assert usage.of("qick", "alice") == pytest.approx(60.0)
    clock.now = T0 + timedelta(hours=2)
    assert usage.of("qick", "alice") == pytest.approx(15.0)
    assert usage.of("other", "alice") == 0.0 and usage.of("qick", "bob") == 0.0


def test_the_setting_names_devices_or_all():
    assert fair_share_devices("qick, fridge")("fridge") and not fair_share_devices("qick")("fridge")
    assert fair_share_devices("*")("anything") and not fair_share_devices("")("qick")


class Rig:
    def __init__(self, devices: str = "*") -> None:
        self.clock, self.store, self.executor = Clock(), MemoryJobStore(), MemoryExecutor()
        self.executor.board.hold()
        self.usage = Usage(self.clock)
        self.ordering = FairShare(self.usage, devices=fair_share_devices(devices))
        self.scheduler = Scheduler.build(
            self.store,
            {"qick": self.executor},
            page_key=b"k" * 32,
            policy=QueuePolicy(self.ordering, [DeviceHoldGate()]),
            clock=self.clock,
            default_run_seconds=RUN.total_seconds(),
        )
        self.ordering.typical_seconds = self.scheduler.estimates.typical
        self.scheduler.bus.add_listener(self.usage.observe)
        self.scheduler.bus.add_listener(self.ordering.observe)

    async def start(self) -> Rig:
        await self.scheduler.start()
        self.ordering.load(self.scheduler.index.device("qick"))
        await self.scheduler.routes.labs["qick"].connected.wait()
        return self

    async def submit(self, owner: str) -> str:
        return (await self.scheduler.submit(sub(owner))).job.job_id

    async def run_next(self) -> str:
        """The run on the board takes a minute of the clock, then ends; its job id."""
        board = self.executor.board
        job_id = await eventually(lambda: board.order[-1] if board.current else "", what="a run on the board")
        await eventually(
            lambda: self.scheduler.get(job_id), until=lambda j: j.state is JobState.RUNNING, what="running"
        )
        self.clock.now += RUN
        board.finish_current()
        await eventually(
            lambda: self.scheduler.get(job_id), until=lambda j: j.state is JobState.SUCCEEDED, what="done"
        )
        return job_id


@pytest.fixture
async def rig():
    rig = await Rig().start()
    yield rig
    await rig.scheduler.stop()


async def test_a_users_backlog_interleaves_with_a_later_users_jobs(rig: Rig):
    alice = [await rig.submit("alice") for _ in range(8)]
    await eventually(lambda: rig.executor.board.waiting, until=lambda w: len(w) == 2, what="two staged")
    bob = [await rig.submit("bob") for _ in range(3)]
    started = [await rig.run_next() for _ in range(11)]
    assert started[0] == alice[0]
    assert bob[0] in started[1:3]  # within the next 2 starts after alice's running one
    # Then turn about: bob's three are done before alice's last three start.
    assert max(started.index(b) for b in bob) < started.index(alice[5])
    assert [j for j in started if j in alice] == alice and [j for j in started if j in bob] == bob
    assert rig.usage.of("qick", "alice") == pytest.approx(8 * 60, rel=0.01)
    ran = await rig.scheduler.get(bob[1])
    assert ran.current_run.reason.policy == "fair-share" and "bob used" in ran.current_run.reason.summary


async def test_the_waiting_reason_gives_the_standing(rig: Rig):
    await rig.submit("alice")
    await rig.run_next()
    await rig.submit("carol")  # on the board: the next ones queue behind it
    queued = [await rig.submit("alice") for _ in range(3)]
    job = await rig.scheduler.get(queued[-1])
    assert job.waiting_reason.policy == "fair-share"
    assert "alice used 60 device-s" in job.waiting_reason.summary
    assert job.waiting_reason.details["usage_seconds"] == pytest.approx(60.0)


async def test_a_device_not_set_to_fair_share_stays_fifo():
    rig = await Rig(devices="elsewhere").start()
    try:
        alice = [await rig.submit("alice") for _ in range(4)]
        bob = await rig.submit("bob")
        started = [await rig.run_next() for _ in range(5)]
        assert started == [*alice, bob]
        ran = await rig.scheduler.get(alice[2])
        assert ran.current_run.reason.policy == "priority-fifo"
    finally:
        await rig.scheduler.stop()


class View:
    """A device's queue as the dispatcher shows it to the policy (lab._View)."""

    def __init__(self, queue, device: str = "qick") -> None:
        self.device, self._queue = device, queue

    def waiting(self):
        return self._queue.unstaged()

    def queued(self, job_id: str):
        return self._queue.get(job_id)


def test_the_index_gives_the_same_order_as_a_scan_of_the_queue():
    import random

    from qsched_scheduler.domain import QueuedJob
    from qsched_scheduler.queue_index import QueueIndex

    rng = random.Random(13)
    clock = Clock()
    usage = Usage(clock)
    for owner in "abcde":
        usage.add(UsedTime(owner, "qick", T0, rng.choice([0.0, 30.0, 60.0, 600.0])))
    jobs = [
        QueuedJob(f"J{n}", "qick", rng.choice([0, 0, 0, 5]), n, rng.choice("abcde"), JobKind.LAB_EXPERIMENT)
        for n in range(300)
    ]
    index = QueueIndex(FairShare(usage).key)
    index.load(jobs)
    for job in rng.sample(jobs, 20):  # some are staged: neither way gives them
        index.staged("qick", job.job_id, f"task-{job.job_id}")
    scanning, indexed = FairShare(usage), FairShare(usage)
    indexed.load(index.device("qick"))
    view = View(index.device("qick"))
    by_scan = [j.job_id for j in scanning.arrange(_ScanOnly(view))]
    by_index = [j.job_id for j in indexed.arrange(view)]
    assert by_index == by_scan and len(by_index) == 280
    # Within a priority, the user with the least usage goes first, then they alternate.
    owner = {j.job_id: j.owner for j in jobs}
    top = [j for j in by_index if next(x for x in jobs if x.job_id == j).priority == 5]
    assert len({owner[j] for j in top[:5]}) >= 4


def test_with_owners_given_the_order_is_theirs_only_the_same_by_index_and_by_scan():
    from qsched_scheduler.domain import QueuedJob
    from qsched_scheduler.queue_index import QueueIndex

    usage = Usage(Clock())
    usage.add(UsedTime("a", "qick", T0, 60.0))
    jobs = [QueuedJob(f"J{n}", "qick", 0, n, "abc"[n % 3], JobKind.LAB_EXPERIMENT) for n in range(30)]
    index = QueueIndex(FairShare(usage).key)
    index.load(jobs)
    indexed = FairShare(usage)
    indexed.load(index.device("qick"))
    view = View(index.device("qick"))
    holders = frozenset({"a", "c"})
    by_index = [j.job_id for j in indexed.arrange(view, holders)]
    by_scan = [j.job_id for j in FairShare(usage).arrange(_ScanOnly(view), holders)]
    assert by_index == by_scan and len(by_index) == 20
    assert by_index[:2] == ["J2", "J0"]  # c has used less than a; then they alternate
    assert {j.owner for j in jobs if j.job_id in by_index} == holders


class _ScanOnly:
    """A view without the lookup: the ordering falls back to scanning."""

    def __init__(self, view: View) -> None:
        self.device, self._view = view.device, view

    def waiting(self):
        return self._view.waiting()
