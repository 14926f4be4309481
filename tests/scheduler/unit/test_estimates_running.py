"""Estimates keeps each device's running job from the committed changes (no query per estimate):
what it read from the store at load stands until that job is seen to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qsched_scheduler.domain import Change, Event, Job, JobKind, JobState, Payload
from qsched_scheduler.estimates import Estimates, estimated_start

T0 = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
DEVICE = "qick"


def job(job_id: str, state: JobState, device: str = DEVICE, started: datetime | None = None) -> Job:
    return Job(job_id, "alice", device, 0, Payload(JobKind.LAB_EXPERIMENT, {}), state, T0, start_time=started)


def change(j: Job, previous: JobState | None) -> Change:
    return Change(j, Event(j.job_id, 2, T0, j.state, j.state.value.lower()), previous)


class StoreDouble:
    """The store's two reads, counted."""

    def __init__(self, running: dict[str, Job]):
        self.running = running
        self.reads = 0

    def running_job(self, device: str) -> Job | None:
        self.reads += 1
        return self.running.get(device)

    def recent_run_seconds(self, device: str, limit: int) -> list[float]:
        return [10.0]


def estimates(store: StoreDouble) -> Estimates:
    return Estimates(store.recent_run_seconds, 60.0, store.running_job)


def test_the_running_job_read_at_load_stands_until_its_end_is_seen() -> None:
    store = StoreDouble({DEVICE: job("JOB-A", JobState.RUNNING, started=T0)})
    est = estimates(store)
    est.load(DEVICE)
    assert est.running(DEVICE).job_id == "JOB-A"
    est.observe(change(job("JOB-B", JobState.QUEUED), None))  # another job's change: A still runs
    assert est.running(DEVICE).job_id == "JOB-A"
    est.observe(change(job("JOB-A", JobState.SUCCEEDED), JobState.RUNNING))
    assert est.running(DEVICE) is None
    assert store.reads == 1  # estimates after the load read nothing


def test_a_stored_read_that_crossed_the_jobs_end_is_not_taken_for_running() -> None:
    store = StoreDouble({DEVICE: job("JOB-A", JobState.RUNNING, started=T0)})
    est = estimates(store)
    est.observe(change(job("JOB-A", JobState.SUCCEEDED), JobState.RUNNING))  # before the load's read lands
    est.load(DEVICE)
    assert est.running(DEVICE) is None


def test_runs_seen_starting_and_ending_move_the_running_job_and_the_estimate() -> None:
    est = estimates(StoreDouble({}))
    est.load(DEVICE)
    assert est.running(DEVICE) is None
    est.observe(change(job("JOB-C", JobState.RUNNING, started=T0), JobState.QUEUED))
    now = T0 + timedelta(seconds=4)
    # 10 s typical, 4 s gone: 6 s left, then one typical run for the job second in line.
    assert estimated_start(now, 2, est.running(DEVICE), est.typical(DEVICE)) == now + timedelta(seconds=16)
    est.observe(change(job("JOB-C", JobState.FAILED), JobState.RUNNING))
    assert est.running(DEVICE) is None
    assert estimated_start(now, 1, est.running(DEVICE), est.typical(DEVICE)) == now


def test_a_provider_device_running_several_jobs_gives_the_earliest() -> None:
    est = estimates(StoreDouble({}))
    est.load("ibm")
    for job_id in ("JOB-20261208-00007", "JOB-20261208-00003"):
        est.observe(change(job(job_id, JobState.RUNNING, "ibm", T0), JobState.QUEUED))
    assert est.running("ibm").job_id == "JOB-20261208-00003"
    est.observe(change(job("JOB-20261208-00003", JobState.SUCCEEDED, "ibm"), JobState.RUNNING))
    assert est.running("ibm").job_id == "JOB-20261208-00007"
