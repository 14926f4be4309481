"""Calibration the scheduler owns, on the memory board with an injectable clock: the freshness
gate holds jobs and queues the chain (dependencies first, shared, never duplicated), a passing run
pushes its fit as the new main (jobs then run pinned to it), a failing one leaves main alone, a
recalibration never interrupts a running job, and the definitions are checked."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from qsched_core.execution import DataRef, Failed, Succeeded
from qsched_scheduler.calendar import Calendar, MemoryCalendarStore, NewWindow, WindowKind
from qsched_scheduler.calibration import definitions as defs
from qsched_scheduler.calibration.configs_port import DefinitionsFile, Pushed, apply_updates
from qsched_scheduler.calibration.manager import CALIBRATOR, Calibrations
from qsched_scheduler.calibration.state import CalibrationState, MemoryCalibrationStore, Status
from qsched_scheduler.domain import JobState
from qsched_scheduler.errors import InvalidArgument
from qsched_scheduler.main_revisions import MainRevision
from qsched_scheduler.store.memory import MemoryJobStore
from tests.scheduler.unit.test_lab_dispatch import (
    NoCalls,
    engine,
    lab,
    mains_at,
    on_board,
    started,
    state_of,
    sub,
)
from tests.support.memory_executor import MemoryExecutor
from tests.support.waiting import eventually

CHAIN = """
on_failure: {on_failure}
calibrations:
  qubit_freq:
    experiment: {{class: QubitSpectroscopyExperiment, module: qsched_hardware.experiments}}
    settings: {{expts: 81}}
    updates: {{qubit.f_ge_mhz: f_ge_mhz}}
    fresh_for_s: 3600
    accept: {{f_ge_err_mhz: [0, 0.2]}}
  rabi:
    experiment: {{class: AmplitudeRabiExperiment, module: qsched_hardware.experiments}}
    updates: {{qubit.pi_pulse.gain: pi_gain}}
    fresh_for_s: 1800
    depends_on: [qubit_freq]
    accept: {{pi_gain: [0.05, 0.95]}}
    required: true
"""
FIT = {
    "QubitSpectroscopyExperiment": {"f_ge_mhz": 4512.3, "f_ge_err_mhz": 0.01},
    "AmplitudeRabiExperiment": {"pi_gain": 0.44},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class FakeConfigs:
    """The config service: the definitions as main, and each push as a new main revision."""

    def __init__(self, content: str):
        self.content = content.encode()
        self.pushes: list[tuple[dict[str, float], str, str]] = []

    async def definitions(self) -> DefinitionsFile:
        return DefinitionsFile("CFG-CA-20261207-00001", self.content)

    async def push_updates(self, updates, job_id, calibration) -> Pushed:
        self.pushes.append((dict(updates), job_id, calibration))
        return Pushed(f"CFG-HW-20261207-{len(self.pushes) + 1:05d}", True)

    async def close(self) -> None:
        pass


class Rig:
    def __init__(self, on_failure: str = "hold", mains=None, states=()):
        self.clock = Clock()
        self.store = MemoryJobStore()
        self.executor = MemoryExecutor()
        self.board = self.executor.board
        self.board.hold()
        self.configs = FakeConfigs(CHAIN.format(on_failure=on_failure))
        self.states = MemoryCalibrationStore()
        for state in states:
            self.states.put_calibration_state(state)
        # The periodic task stays out of the way: the tests call tick() themselves.
        self.calibrations = Calibrations(self.states, self.configs, mains, clock=self.clock, check_s=3600)
        extra = {"mains": mains, "pinner": NoCalls()} if mains is not None else {}
        self.scheduler = engine(
            self.store,
            self.executor,
            calibrations=self.calibrations,
            clock=self.clock,
            default_run_seconds=0.01,
            **extra,
        )

    async def __aenter__(self) -> Rig:
        await started(self.scheduler)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.scheduler.stop()

    async def finish(self, fit: dict | None = None, fail: str = "") -> str:
        """End the run on the board: a calibration with its fit (FIT by default), a user job plainly."""
        await eventually(lambda: self.board.current, what="a run on the board")
        run = self.board.runs[self.board.current]
        cls = run.request.experiment.experiment_class
        if fail:
            return self.board.finish_current(Failed("PROGRAM_ERROR", fail))
        if run.request.owner == CALIBRATOR:
            summary = fit if fit is not None else FIT[cls]
            return self.board.finish_current(Succeeded(DataRef("x.h5"), summary))
        return self.board.finish_current()

    def calibration_jobs(self) -> list[str]:
        """Calibration jobs handed to the board, in order (a run taken back and handed over again once)."""
        return list(dict.fromkeys(r.job_id for r in self.board.requests if r.owner == CALIBRATOR))


def fresh(name: str, clock: Clock, age_s: float, fresh_for_s: float) -> CalibrationState:
    passed = clock.now - timedelta(seconds=age_s)
    return CalibrationState(
        "qick",
        name,
        Status.FRESH,
        "JOB-20261207-00000",
        passed,
        passed,
        passed + timedelta(seconds=fresh_for_s),
    )


async def test_a_stale_chain_runs_first_dependencies_first_shared_by_every_waiting_job():
    async with Rig() as rig:
        jobs = [(await rig.scheduler.submit(sub())).job for _ in range(3)]
        assert not jobs[0].staged_task_id, "a gate holds it: not claimed at submit"
        waiting = await rig.scheduler.get(jobs[1].job_id)
        assert waiting.waiting_reason.policy == "calibration-freshness"
        assert (
            "qubit_freq" in waiting.waiting_reason.summary
            and "never calibrated" in waiting.waiting_reason.summary
        )
        # The chain: spectroscopy, then Rabi (which waits for it), then the jobs.
        await rig.finish()
        await rig.finish()
        for job in jobs:
            await on_board(rig.board, job.job_id)
            await rig.finish()
            await state_of(rig.scheduler, job.job_id, JobState.SUCCEEDED)
        cal = rig.calibration_jobs()
        assert len(cal) == 2, "one recalibration shared by the three jobs"
        assert rig.board.order == [*cal, *(j.job_id for j in jobs)]
        assert [c for _, _, c in rig.configs.pushes] == ["qubit_freq", "rabi"]
        assert rig.configs.pushes[1] == ({"qubit.pi_pulse.gain": 0.44}, cal[1], "rabi")
        states = {s.name: s for s in await rig.scheduler.calibration_states("qick")}
        assert states["rabi"].status is Status.FRESH and states["rabi"].job_id == cal[1]
        assert states["rabi"].fresh_until == rig.clock.now + timedelta(seconds=1800)
        assert states["rabi"].values["pi_gain"] == 0.44
        first = await rig.scheduler.get(cal[0])
        assert first.owner == CALIBRATOR and first.labels == {"calibration": "qubit_freq"}


async def test_fresh_calibrations_let_jobs_through_and_stale_ones_are_skipped_if_fresh():
    clock = Clock()
    states = [fresh("qubit_freq", clock, 100, 3600), fresh("rabi", clock, 2000, 1800)]
    async with Rig(states=states) as rig:
        job = (await rig.scheduler.submit(sub())).job
        await rig.finish()  # only Rabi: its dependency is fresh
        await on_board(rig.board, job.job_id)
        assert [c for _, _, c in rig.configs.pushes] == ["rabi"]
        await rig.finish()
        await state_of(rig.scheduler, job.job_id, JobState.SUCCEEDED)
        # Fresh now: the next job is claimed at submit, without waiting.
        again = (await rig.scheduler.submit(sub())).job
        assert again.staged_task_id
        assert len(rig.calibration_jobs()) == 1


async def test_a_job_may_ask_for_a_younger_calibration_than_the_definition():
    clock = Clock()
    states = [fresh("qubit_freq", clock, 100, 3600), fresh("rabi", clock, 120, 1800)]
    async with Rig(states=states) as rig:
        easy = (await rig.scheduler.submit(sub())).job
        assert easy.staged_task_id, "120 s old Rabi is fresh for the definition"
        strict = (await rig.scheduler.submit(sub(payload=lab(calibrations={"rabi": 60.0})))).job
        reason = (await rig.scheduler.get(strict.job_id)).waiting_reason
        assert "older than this job accepts" in reason.summary
        await rig.finish()  # the easy job
        await rig.finish()  # Rabi, queued for the strict one
        await on_board(rig.board, strict.job_id)
        assert [c for _, _, c in rig.configs.pushes] == ["rabi"]


async def test_a_recalibration_waits_for_the_running_job_it_never_interrupts_it():
    clock = Clock()
    states = [fresh("qubit_freq", clock, 0, 3600), fresh("rabi", clock, 0, 1800)]
    async with Rig(states=states) as rig:
        running = (await rig.scheduler.submit(sub())).job
        await on_board(rig.board, running.job_id)
        rig.clock.now += timedelta(seconds=1900)  # Rabi goes stale while the job runs
        later = (await rig.scheduler.submit(sub())).job
        cal = await eventually(rig.calibration_jobs, what="the recalibration handed over")
        assert rig.board.current and rig.board.runs[rig.board.current].job_id == running.job_id
        await rig.finish()  # the running job ends normally...
        await state_of(rig.scheduler, running.job_id, JobState.SUCCEEDED)
        await rig.finish()  # ...then Rabi runs, then the waiting job
        await on_board(rig.board, later.job_id)
        assert rig.board.order == [running.job_id, cal[0], later.job_id]


async def test_a_failed_acceptance_check_leaves_main_alone_and_holds_the_jobs(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock()
    async with Rig(states=[fresh("qubit_freq", clock, 0, 3600)]) as rig:
        job = (await rig.scheduler.submit(sub())).job
        await rig.finish({"pi_gain": 1.7})  # outside [0.05, 0.95]
        await eventually(
            lambda: rig.calibrations.state("qick", "rabi").status,
            until=lambda s: s is Status.FAILED,
            what="failed",
        )
        state = rig.calibrations.state("qick", "rabi")
        assert (
            rig.configs.pushes == [] and state.failures == 1 and "pi_gain = 1.7 outside" in state.last_error
        )
        assert any("CALIBRATION ALERT" in r.message for r in caplog.records)
        reason = (await rig.scheduler.get(job.job_id)).waiting_reason
        assert reason.policy == "calibration-freshness" and "rabi failed" in reason.summary
        assert (await rig.scheduler.get(job.job_id)).state is JobState.QUEUED
        assert len(rig.calibration_jobs()) == 1, "a failed calibration is not retried on its own"
        # The operator runs it again; this time it passes and the job runs.
        assert await rig.scheduler.calibrate("qick", "rabi") == ["rabi"]
        await rig.finish()
        await on_board(rig.board, job.job_id)
        assert [c for _, _, c in rig.configs.pushes] == ["rabi"]


async def test_a_failed_dependency_cancels_the_rest_of_the_chain_and_with_fail_fails_the_waiting_jobs():
    async with Rig(on_failure="fail") as rig:
        job = (await rig.scheduler.submit(sub())).job
        await rig.finish(fail="no qubit line found")
        ended = await state_of(rig.scheduler, job.job_id, JobState.FAILED)  # it never ran
        assert ended.error.reason == "CALIBRATION_FAILED"
        assert "qubit_freq it needs failed" in ended.error.message
        assert ended.start_time is None and not ended.current_run
        rabi_job = rig.calibrations.state("qick", "rabi").job_id
        assert (await rig.scheduler.get(rabi_job)).state is JobState.CANCELLED
        assert rig.calibrations.state("qick", "qubit_freq").status is Status.FAILED
        assert rig.configs.pushes == []


async def test_released_jobs_are_pinned_to_the_revision_the_calibration_pushed():
    clock = Clock()
    mains = mains_at("CFG-HW-20261207-00001", 1)
    async with Rig(mains=mains, states=[fresh("qubit_freq", clock, 0, 3600)]) as rig:
        job = (await rig.scheduler.submit(sub())).job
        await rig.finish()  # Rabi passes: pushes CFG-HW-...-00002
        await eventually(lambda: rig.configs.pushes, what="the push")
        reason = await eventually(
            lambda: rig.scheduler.get(job.job_id),
            until=lambda j: "not main here yet" in j.waiting_reason.summary,
            what="waiting for the new main",
        )
        assert reason.state is JobState.QUEUED
        mains.apply(MainRevision("hardware_config", "CFG-HW-20261207-00002", "cd" * 32, 2))  # the stream
        await on_board(rig.board, job.job_id)
        pinned = rig.board.runs[rig.board.current].request.configs[0].revision_id
        assert pinned == "CFG-HW-20261207-00002"
        assert len(rig.calibration_jobs()) == 1, (
            "a passed calibration is not queued again while main catches up"
        )


def test_definitions_are_checked():
    parsed = defs.parse(CHAIN.format(on_failure="hold"), "CFG-CA-1")
    assert parsed.chain(["rabi"]) == ["qubit_freq", "rabi"] and parsed.required_on("qick") == ("rabi",)
    cycle = (
        "calibrations:\n  a: {experiment: {class: X}, depends_on: [b]}\n"
        "  b: {experiment: {class: X}, depends_on: [a]}\n"
    )
    with pytest.raises(InvalidArgument, match="cycle"):
        defs.parse(cycle)
    with pytest.raises(InvalidArgument, match="unknown calibration"):
        defs.parse("calibrations:\n  a: {experiment: {class: X}, depends_on: [z]}\n")
    with pytest.raises(InvalidArgument, match="on_failure"):
        defs.parse("on_failure: retry\n")
    per_device = defs.parse("on_failure: {default: fail, lab2: hold}\n")
    assert (per_device.failure_mode("qick"), per_device.failure_mode("lab2")) == ("fail", "hold")
    rabi = parsed.get("rabi")
    assert defs.check(rabi, {"pi_gain": 0.4}).updates == {"qubit.pi_pulse.gain": 0.4}
    assert not defs.check(rabi, {"pi_gain": float("nan")}).passed
    assert not defs.check(rabi, {}).passed


def test_updates_go_into_the_hardware_config_by_dotted_key():
    out = apply_updates(
        b"qubit:\n  f_ge_mhz: 4500.0\n  pi_pulse: {gain: 0.4, sigma_us: 0.025}\n",
        {"qubit.pi_pulse.gain": 0.45},
    )
    import yaml

    assert yaml.safe_load(out)["qubit"] == {"f_ge_mhz": 4500.0, "pi_pulse": {"gain": 0.45, "sigma_us": 0.025}}


def test_a_stale_required_calibration_stops_the_walk_once_the_chain_is_ahead_or_handed_over():
    """A dispatch with 10,000 held jobs costs about what it costs with one: the policy stops at the
    first held job once no recalibration waits behind it."""
    from qsched_scheduler.calibration.gate import CalibrationGate
    from qsched_scheduler.domain import JobKind, QueuedJob
    from qsched_scheduler.policy import DeviceHoldGate, PriorityFifo, QueuePolicy
    from qsched_scheduler.queue_index import DeviceQueue

    clock = Clock()
    definitions = defs.parse(CHAIN.format(on_failure="hold"))
    calibrations = Calibrations(MemoryCalibrationStore(), definitions=definitions, clock=clock)
    calibrations._states[("qick", "qubit_freq")] = fresh("qubit_freq", clock, 0, 3600)
    calibrations._states[("qick", "rabi")] = fresh("rabi", clock, 2000, 1800)  # stale
    calibrations._active = {("qick", "rabi")}
    calibrations._jobs = {"JOB-CAL": ("qick", "rabi")}
    asked: list[str] = []
    gate = CalibrationGate(calibrations)
    counting = type(
        "Counting", (), {"name": "count", "holds": lambda self, job, view: asked.append(job.job_id)}
    )()
    policy = QueuePolicy(PriorityFifo(), [DeviceHoldGate(), counting, gate])
    queue = DeviceQueue(policy.key)
    for i in range(1000):
        queue.put(QueuedJob(f"JOB-{i}", "qick", 0, i + 1, "alice", JobKind.LAB_EXPERIMENT))

    class View:
        device, hold, now = "qick", None, clock.now
        on_board: tuple[str, ...] = ()

        def waiting(self):
            return queue.unstaged()

        def ahead_of(self, job_id):
            return max(0, queue.position(job_id) - 1)

    # The recalibration is queued behind every user job (a tie it cannot win): the walk goes on.
    queue.put(QueuedJob("JOB-CAL", "qick", 0, 10**6, CALIBRATOR, JobKind.LAB_EXPERIMENT))
    assert [d.job.job_id for d in policy.next_runs(View(), 4)] == ["JOB-CAL"]
    assert len(asked) == 1001
    # Handed over: the first held job ends the walk.
    asked.clear()
    queue.remove("JOB-CAL")
    View.on_board = ("JOB-CAL",)
    assert policy.next_runs(View(), 4) == [] and asked == ["JOB-0"]
    reason = policy.why_waiting(queue.get("JOB-500"), View())
    assert reason.policy == "calibration-freshness" and "rabi" in reason.summary


async def test_a_periodic_calibration_runs_when_due_even_with_no_job_waiting():
    clock = Clock()
    states = [fresh("qubit_freq", clock, 0, 3600), fresh("rabi", clock, 0, 1800)]
    async with Rig(states=states) as rig:
        required = "    required: true"
        periodic = CHAIN.format(on_failure="hold").replace(required, required + "\n    every_s: 600")
        rig.calibrations.definitions = defs.parse(periodic)
        assert rig.calibrations.tick() == [], "not due yet"
        rig.clock.now += timedelta(seconds=601)
        assert rig.calibrations.tick() == [("qick", "rabi")], "due; its dependency is fresh"
        assert rig.calibrations.tick() == [], "queued once"
        await rig.finish()
        await eventually(lambda: rig.configs.pushes, what="the periodic Rabi pushed")
        assert [c for _, _, c in rig.configs.pushes] == ["rabi"]


async def test_an_in_windows_calibration_runs_once_in_each_calibration_window():
    clock = Clock()
    states = [fresh("qubit_freq", clock, 0, 3600), fresh("rabi", clock, 0, 1800)]
    async with Rig(states=states) as rig:
        calendar = Calendar(MemoryCalendarStore(), rig.clock)
        rig.calibrations.window_start = calendar.calibration_window_start
        required = "    required: true"
        nightly = CHAIN.format(on_failure="hold").replace(required, required + "\n    in_windows: true")
        rig.calibrations.definitions = defs.parse(nightly)
        opens = rig.clock.now + timedelta(minutes=10)
        for kind, start in ((WindowKind.EXCLUSIVE, rig.clock.now), (WindowKind.CALIBRATION, opens)):
            calendar.create(NewWindow("qick", kind, start, start + timedelta(minutes=5), ("alice",)), "op")
        rig.clock.now += timedelta(minutes=1)
        assert rig.calibrations.tick() == [], "an exclusive window is not a calibration window"
        rig.clock.now = opens
        assert rig.calibrations.tick() == [("qick", "rabi")], "the window opened; its dependency is fresh"
        assert rig.calibrations.tick() == [], "queued once"
        await rig.finish()
        await eventually(lambda: rig.configs.pushes, what="the in-window Rabi pushed")
        assert [c for _, _, c in rig.configs.pushes] == ["rabi"]
        await eventually(lambda: rig.calibrations.state("qick", "rabi").status is Status.FRESH)
        assert rig.calibrations.tick() == [], "passed inside this window: not again in it"
        rig.clock.now = opens + timedelta(minutes=6)
        assert rig.calibrations.tick() == [], "the window ended"


async def test_runs_staged_before_a_calibration_expires_are_taken_back_and_wait_for_it():
    clock = Clock()
    states = [fresh("qubit_freq", clock, 0, 3600), fresh("rabi", clock, 0, 1800)]
    async with Rig(states=states) as rig:
        running = (await rig.scheduler.submit(sub())).job
        await on_board(rig.board, running.job_id)
        staged = (await rig.scheduler.submit(sub())).job
        await eventually(lambda: len(rig.board.waiting), until=lambda n: n == 1, what="one staged")
        rig.clock.now += timedelta(seconds=1900)  # Rabi expires with a run staged behind the running one
        assert rig.calibrations.tick() == []
        cal = await eventually(rig.calibration_jobs, what="the recalibration handed over")
        await eventually(
            lambda: [rig.board.runs[t].job_id for t in rig.board.waiting],
            until=lambda w: w == cal,
            what="the staged run taken back; Rabi waits on the board",
        )
        await rig.finish()  # the running job
        await rig.finish()  # Rabi
        await on_board(rig.board, staged.job_id)
        assert rig.board.order == [running.job_id, cal[0], staged.job_id]
        done = await state_of(rig.scheduler, running.job_id, JobState.SUCCEEDED)
        assert done.state is JobState.SUCCEEDED


async def test_a_job_asking_for_a_negative_age_is_refused_at_submit():
    async with Rig() as rig:
        with pytest.raises(InvalidArgument, match="calibrations"):
            await rig.scheduler.submit(sub(payload=lab(calibrations={"rabi": -5.0})))


async def test_after_a_restart_recalibration_jobs_no_state_names_are_followed():
    async with Rig() as rig:
        await rig.scheduler.submit(sub())
        await eventually(lambda: rig.calibration_jobs(), until=lambda c: len(c) >= 1, what="the chain queued")
        await eventually(lambda: rig.calibrations.state("qick", "rabi").job_id, what="Rabi's job recorded")
        # A scheduler that stopped before recording them: an empty state store.
        again = Calibrations(MemoryCalibrationStore(), rig.configs, clock=rig.clock, check_s=3600)

        async def run(fn, *args):
            return fn(*args)

        await again.start(rig.scheduler, run)
        try:
            names = sorted(name for _, name in again._jobs.values())
            assert names == ["qubit_freq", "rabi"]
            assert again.state("qick", "rabi").status is Status.RUNNING
        finally:
            await again.stop()
