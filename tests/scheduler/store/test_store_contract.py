"""The JobStore contract, run against every implementation: the in-memory fake,
SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from qsched_core.execution import DataRef
from qsched_scheduler import ids
from qsched_scheduler.domain import (
    ErrorDetail,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    LogLines,
    NewJob,
    Payload,
    Reason,
    Run,
    queued_job,
)
from qsched_scheduler.errors import FailedPrecondition, NotFound
from qsched_scheduler.store.base import Claim, JobStore, RunUpdate, StageRequest, cursor_of
from qsched_scheduler.store.engine import make_engine
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.store.sql import SqlJobStore
from tests.support.provenance import repository_code

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
DEVICE = "qpu-a"
OTHER = "qpu-b"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    if request.param == "memory":
        impl: JobStore = MemoryJobStore()
    else:
        url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "clean_postgres_url")
        impl = SqlJobStore(make_engine(url))
    try:
        yield impl
    finally:
        impl.close()


def new_job(
    device: str = DEVICE,
    priority: int = 0,
    owner: str = "alice",
    kind: JobKind = JobKind.LAB_EXPERIMENT,
    request_id: str = "",
    labels: dict[str, str] | None = None,
    body: dict | None = None,
) -> NewJob:
    return NewJob(
        owner=owner,
        device=device,
        priority=priority,
        payload=Payload(kind, body if body is not None else {"experiment": "t1", "reps": 100}),
        request_id=request_id,
        labels=labels or {},
        trace_parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )


def submit(store: JobStore, now: datetime = T0, **kwargs) -> Job:
    outcome = store.submit(new_job(**kwargs), now)
    assert outcome.created
    return outcome.change.job


def claim(store: JobStore, device: str, task_id: str, now: datetime = T0) -> Job:
    change = store.claim_next(device, task_id, now)
    assert change is not None, f"nothing claimed on {device}"
    return change.job


def finish(
    store: JobStore,
    task_id: str,
    now: datetime,
    state: JobState = JobState.SUCCEEDED,
    started: datetime | None = None,
) -> Job:
    if started is not None:
        assert store.update_run(task_id, RunUpdate(started=True, message="started"), started) is not None
    error = None if state is JobState.SUCCEEDED else ErrorDetail("BOOM", "it broke")
    change = store.update_run(task_id, RunUpdate(final_state=state, error=error, message=state.value), now)
    assert change is not None
    return change.job


def list_ids(store: JobStore, flt: JobFilter, limit: int = 1000) -> list[str]:
    return [job.job_id for job in store.list_jobs(flt, None, limit)]


def assert_utc(value: datetime | None) -> None:
    assert value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


# -- submit and ids ------------------------------------------------------------------------------------------
def test_submit_queues_the_job_and_logs_the_first_event(store: JobStore) -> None:
    outcome = store.submit(new_job(priority=7, labels={"team": "qubits"}, body={"experiment": "rabi"}), T0)

    assert outcome.created
    job = outcome.change.job
    assert job.job_id == "JOB-20260314-00001" and ids.is_job_id(job.job_id)
    assert (job.owner, job.device, job.priority, job.state) == ("alice", DEVICE, 7, JobState.QUEUED)
    assert job.payload == Payload(JobKind.LAB_EXPERIMENT, {"experiment": "rabi"})
    assert job.labels == {"team": "qubits"}
    assert job.trace_parent.startswith("00-0af7")
    assert (job.create_time, job.start_time, job.end_time, job.error) == (T0, None, None, None)
    assert (job.last_seq, job.current_run, job.run_count, job.cancel_requested) == (1, None, 0, False)
    event = outcome.change.event
    assert (event.job_id, event.seq, event.time, event.state, event.message) == (
        job.job_id,
        1,
        T0,
        JobState.QUEUED,
        "queued",
    )
    assert outcome.change.previous_state is None

    stored = store.get(job.job_id)
    assert stored == job
    assert_utc(stored.create_time)
    assert store.get("JOB-20260314-99999") is None


def test_ids_count_per_day_and_every_day_starts_a_new_counter(store: JobStore) -> None:
    day1 = [submit(store, now=T0 + timedelta(hours=i)) for i in range(3)]
    day2 = submit(store, now=T0 + timedelta(days=1))
    late_day1 = submit(store, now=T0)

    assert [j.job_id for j in day1] == ["JOB-20260314-00001", "JOB-20260314-00002", "JOB-20260314-00003"]
    assert day2.job_id == "JOB-20260315-00001"
    assert late_day1.job_id == "JOB-20260314-00004"
    orders = [j.order for j in [*day1, day2, late_day1]]
    assert orders == sorted(orders) and len(set(orders)) == 5


def test_submit_with_a_known_request_id_returns_the_first_job_and_writes_nothing(store: JobStore) -> None:
    first = store.submit(new_job(request_id="req-1"), T0)
    retry = store.submit(new_job(request_id="req-1", priority=50, body={"other": True}), at(5))

    assert not retry.created
    assert retry.change.job == first.change.job
    assert retry.change.event == first.change.event
    job_id = first.change.job.job_id
    assert store.events_after(job_id, 0) == [first.change.event]
    assert list_ids(store, JobFilter()) == [job_id]
    # No id was used up by the retry.
    assert submit(store).job_id == "JOB-20260314-00002"

    # Later retries see the job as it is now, still with its first event.
    claim(store, DEVICE, "task-1", at(6))
    later = store.submit(new_job(request_id="req-1"), at(7))
    assert not later.created
    assert later.change.job.state is JobState.RUNNING
    assert later.change.event.seq == 1
    assert len(store.events_after(job_id, 0)) == 2


# -- claiming ------------------------------------------------------------------------------------------------
def test_claim_next_marks_the_job_running_with_a_new_run(store: JobStore) -> None:
    job = submit(store)

    change = store.claim_next(DEVICE, "task-1", at(1))

    assert change is not None
    assert change.previous_state is JobState.QUEUED
    claimed = change.job
    assert (claimed.job_id, claimed.state, claimed.start_time, claimed.run_count) == (
        job.job_id,
        JobState.RUNNING,
        None,
        1,
    )
    assert claimed.current_run == Run(
        task_id="task-1", attempt=1, state=JobState.RUNNING, payload=job.payload, job_id=job.job_id
    )
    assert (change.event.seq, change.event.state, change.event.message, change.event.task_id) == (
        2,
        JobState.RUNNING,
        "dispatched to the device",
        "task-1",
    )
    assert store.get(job.job_id) == claimed
    assert store.claim_next(OTHER, "task-2", at(1)) is None


def test_claim_next_takes_the_highest_priority_then_the_oldest(store: JobStore) -> None:
    low = submit(store, priority=0)
    high = submit(store, priority=5)
    high_later = submit(store, priority=5)
    lowest = submit(store, priority=-1)

    claimed = []
    for i in range(4):
        claimed.append(claim(store, DEVICE, f"task-{i}", at(i)).job_id)
        finish(store, f"task-{i}", at(i + 0.5))

    assert claimed == [high.job_id, high_later.job_id, low.job_id, lowest.job_id]
    assert store.claim_next(DEVICE, "task-x", at(9)) is None


def test_at_most_one_running_job_per_device(store: JobStore) -> None:
    first = submit(store)
    second = submit(store)
    other = submit(store, device=OTHER)

    assert claim(store, DEVICE, "task-1").job_id == first.job_id
    assert store.claim_next(DEVICE, "task-2", at(1)) is None
    assert store.get(second.job_id).state is JobState.QUEUED
    assert claim(store, OTHER, "task-3").job_id == other.job_id
    assert store.running_job(DEVICE).job_id == first.job_id
    assert store.running_job("qpu-idle") is None

    finish(store, "task-1", at(2))
    assert claim(store, DEVICE, "task-4", at(3)).job_id == second.job_id


def test_release_claim_requeues_the_job_ahead_of_later_jobs(store: JobStore) -> None:
    first = submit(store)
    later = submit(store)
    claim(store, DEVICE, "task-1", at(1))
    store.update_run("task-1", RunUpdate(started=True), at(2))

    change = store.release_claim("task-1", "executor refused the task", at(3))

    assert change.previous_state is JobState.RUNNING
    job = change.job
    assert (job.state, job.start_time, job.current_run, job.run_count, job.order) == (
        JobState.QUEUED,
        None,
        None,
        0,
        first.order,
    )
    assert (change.event.seq, change.event.state, change.event.message, change.event.task_id) == (
        4,
        JobState.QUEUED,
        "executor refused the task",
        "",
    )
    assert store.get(first.job_id) == job
    assert store.queue_position(job) == 1
    assert store.update_run("task-1", RunUpdate(progress=0.5), at(4)) is None
    reclaimed = claim(store, DEVICE, "task-2", at(5))
    assert reclaimed.job_id == first.job_id
    assert reclaimed.current_run.attempt == 1
    assert store.get(later.job_id).state is JobState.QUEUED
    with pytest.raises(KeyError):
        store.release_claim("no-such-task", "gone", at(6))


def test_running_jobs_lists_every_running_job_with_its_run(store: JobStore) -> None:
    a = submit(store)
    b = submit(store, device=OTHER)
    done = submit(store, device="qpu-c")
    submit(store)  # stays queued behind a
    claim(store, DEVICE, "task-a")
    claim(store, OTHER, "task-b")
    claim(store, "qpu-c", "task-c")
    finish(store, "task-c", at(1))

    running = store.running_jobs()

    assert [j.job_id for j in running] == [a.job_id, b.job_id]
    assert [j.current_run.task_id for j in running] == ["task-a", "task-b"]
    assert store.get(done.job_id).state is JobState.SUCCEEDED


# -- queue position and lists --------------------------------------------------------------------------------
def test_queue_position_counts_the_jobs_that_run_first(store: JobStore) -> None:
    normal = submit(store, priority=0)
    urgent = submit(store, priority=9)
    normal_later = submit(store, priority=0)
    elsewhere = submit(store, device=OTHER, priority=-5)

    def position(job: Job) -> int:
        return store.queue_position(store.get(job.job_id))

    assert [position(j) for j in (urgent, normal, normal_later, elsewhere)] == [1, 2, 3, 1]
    assert store.queued_count(DEVICE) == 3

    claim(store, DEVICE, "task-1")
    assert [position(j) for j in (urgent, normal, normal_later)] == [0, 1, 2]
    assert store.queued_count(DEVICE) == 2

    store.cancel_queued(normal.job_id, "", at(1))
    assert [position(j) for j in (normal, normal_later)] == [0, 1]
    assert store.queued_count(DEVICE) == 1
    assert store.queued_count("qpu-idle") == 0


def _populate(store: JobStore) -> dict[str, Job]:
    """Jobs in every state on two devices, two owners and two kinds."""
    jobs = {"running": submit(store, priority=-5)}
    claim(store, DEVICE, "task-run")
    jobs["done"] = submit(store, device=OTHER, owner="bob")
    claim(store, OTHER, "task-done")
    finish(store, "task-done", at(1))
    jobs["q0"] = submit(store, priority=0)
    jobs["q5"] = submit(store, priority=5)
    jobs["bob"] = submit(store, device=OTHER, priority=1, owner="bob", kind=JobKind.CIRCUIT)
    jobs["cancelled"] = submit(store, priority=3)
    store.cancel_queued(jobs["cancelled"].job_id, "not needed", at(2))
    jobs["q0b"] = submit(store, priority=0, kind=JobKind.BENCHMARK)
    return {name: store.get(job.job_id) for name, job in jobs.items()}


def test_queue_view_lists_running_then_queued_in_run_order(store: JobStore) -> None:
    jobs = _populate(store)

    def names(**kwargs) -> list[str]:
        by_id = {job.job_id: name for name, job in jobs.items()}
        return [by_id[i] for i in list_ids(store, JobFilter(view=ListView.QUEUE, **kwargs))]

    assert names() == ["running", "q5", "bob", "q0", "q0b"]
    assert names(device=DEVICE) == ["running", "q5", "q0", "q0b"]
    assert names(owner="bob") == ["bob"]
    assert names(kind=JobKind.CIRCUIT) == ["bob"]
    assert names(states=frozenset({JobState.QUEUED})) == ["q5", "bob", "q0", "q0b"]
    assert names(states=frozenset({JobState.RUNNING, JobState.SUCCEEDED})) == ["running"]
    assert store.list_jobs(JobFilter(view=ListView.QUEUE), None, 2)[0].current_run.task_id == "task-run"


def test_queue_view_of_only_finished_states_is_empty(store: JobStore) -> None:
    _populate(store)

    flt = JobFilter(view=ListView.QUEUE, states=frozenset({JobState.SUCCEEDED}))
    assert store.list_jobs(flt, None, 100) == []


def test_history_view_lists_newest_first(store: JobStore) -> None:
    jobs = _populate(store)
    by_id = {job.job_id: name for name, job in jobs.items()}

    def names(**kwargs) -> list[str]:
        return [by_id[i] for i in list_ids(store, JobFilter(view=ListView.HISTORY, **kwargs))]

    assert names() == ["q0b", "cancelled", "bob", "q5", "q0", "done", "running"]
    assert names(owner="bob") == ["bob", "done"]
    assert names(device=OTHER) == ["bob", "done"]
    assert names(kind=JobKind.BENCHMARK) == ["q0b"]
    assert names(states=frozenset({JobState.SUCCEEDED, JobState.CANCELLED})) == ["cancelled", "done"]
    assert names(owner="bob", states=frozenset({JobState.QUEUED})) == ["bob"]
    assert names(owner="nobody") == []


@pytest.mark.parametrize("view", [ListView.QUEUE, ListView.HISTORY])
def test_keyset_pages_cover_the_list_exactly_once(store: JobStore, view: ListView) -> None:
    for i in range(24):
        submit(store, device=(DEVICE, OTHER, "qpu-c")[i % 3], priority=(0, 3, -1, 3)[i % 4])
    for device in (DEVICE, OTHER):
        claim(store, device, f"task-{device}")
    claim(store, "qpu-c", "task-c")
    finish(store, "task-c", at(1))
    for flt in (JobFilter(view=view), JobFilter(view=view, device=OTHER)):
        everything = list_ids(store, flt)
        assert len(everything) == len(set(everything)) > 5
        for size in (1, 2, 5, 7, 100):
            paged: list[str] = []
            after = None
            while True:
                page = store.list_jobs(flt, after, size)
                assert len(page) <= size
                paged.extend(job.job_id for job in page)
                if len(page) < size:
                    break
                after = cursor_of(page[-1], flt)
            assert paged == everything, (flt, size)


# -- cancel and delete ---------------------------------------------------------------------------------------
def test_cancel_queued(store: JobStore) -> None:
    job = submit(store)
    silent = submit(store)

    change = store.cancel_queued(job.job_id, "wrong sample", at(1))

    assert change.previous_state is JobState.QUEUED
    cancelled = change.job
    assert (cancelled.state, cancelled.end_time) == (JobState.CANCELLED, at(1))
    assert cancelled.error == ErrorDetail("CANCELLED", "wrong sample")
    assert (change.event.seq, change.event.state, change.event.message) == (
        2,
        JobState.CANCELLED,
        "cancelled: wrong sample",
    )
    assert store.get(job.job_id) == cancelled

    other = store.cancel_queued(silent.job_id, "", at(1))
    assert other.job.error == ErrorDetail("CANCELLED", "cancelled while queued")
    assert other.event.message == "cancelled"

    with pytest.raises(FailedPrecondition) as info:
        store.cancel_queued(job.job_id, "again", at(2))
    assert info.value.reason == "JOB_NOT_QUEUED"
    with pytest.raises(NotFound) as missing:
        store.cancel_queued("JOB-20260314-99999", "", at(2))
    assert missing.value.reason == "JOB_NOT_FOUND"


def test_cancel_queued_with_a_failure_ends_the_job_failed_without_a_run(store: JobStore) -> None:
    job = submit(store)
    stage(store, job, "task-1")  # handed over, never started: its run goes too
    error = ErrorDetail("CALIBRATION_FAILED", "calibration rabi it needs failed: fit out of bounds")

    change = store.cancel_queued(job.job_id, "", at(1), error)

    assert (change.job.state, change.job.error, change.job.staged_task_id) == (JobState.FAILED, error, "")
    assert change.event.message == f"failed: CALIBRATION_FAILED: {error.message}"
    assert store.get(job.job_id) == change.job and store.get(job.job_id).run_count == 0


def test_cancel_queued_refuses_a_running_job(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1")
    with pytest.raises(FailedPrecondition) as info:
        store.cancel_queued(job.job_id, "", at(1))
    assert info.value.reason == "JOB_NOT_QUEUED"


def test_request_cancel_marks_a_running_job(store: JobStore) -> None:
    job = submit(store)
    with pytest.raises(FailedPrecondition) as info:
        store.request_cancel(job.job_id, "stop", at(1))
    assert info.value.reason == "JOB_NOT_RUNNING"
    claim(store, DEVICE, "task-1", at(1))

    change = store.request_cancel(job.job_id, "stop", at(2))

    assert change.previous_state is JobState.RUNNING
    assert (change.job.state, change.job.cancel_requested) == (JobState.RUNNING, True)
    assert (change.event.message, change.event.task_id, change.event.state) == (
        "cancel requested: stop",
        "task-1",
        JobState.RUNNING,
    )
    assert store.get(job.job_id).cancel_requested
    assert store.request_cancel(job.job_id, "", at(3)).event.message == "cancel requested"

    stopped = finish(store, "task-1", at(4), state=JobState.CANCELLED)
    assert (stopped.state, stopped.cancel_requested) == (JobState.CANCELLED, False)
    with pytest.raises(FailedPrecondition) as after:
        store.request_cancel(job.job_id, "", at(5))
    assert after.value.reason == "JOB_NOT_RUNNING"
    with pytest.raises(NotFound) as missing:
        store.request_cancel("JOB-20260314-99999", "", at(5))
    assert missing.value.reason == "JOB_NOT_FOUND"


def test_delete_removes_only_finished_jobs(store: JobStore) -> None:
    job = submit(store, request_id="req-del")
    with pytest.raises(FailedPrecondition) as queued:
        store.delete(job.job_id)
    assert queued.value.reason == "JOB_NOT_TERMINAL"
    claim(store, DEVICE, "task-1")
    with pytest.raises(FailedPrecondition) as running:
        store.delete(job.job_id)
    assert running.value.reason == "JOB_NOT_TERMINAL"
    finish(store, "task-1", at(1))

    store.delete(job.job_id)

    assert store.get(job.job_id) is None
    assert store.events_after(job.job_id, 0) == []
    assert store.update_run("task-1", RunUpdate(progress=0.5), at(2)) is None
    assert list_ids(store, JobFilter()) == []
    with pytest.raises(NotFound) as missing:
        store.delete(job.job_id)
    assert missing.value.reason == "JOB_NOT_FOUND"
    # The request id is free again, and the id counter never goes back.
    again = store.submit(new_job(request_id="req-del"), at(3))
    assert again.created and again.change.job.job_id == "JOB-20260314-00002"
    assert again.change.job.order > job.order


# -- executor updates ----------------------------------------------------------------------------------------
def test_update_run_applies_start_progress_and_success(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1", at(1))

    started = store.update_run("task-1", RunUpdate(executor_seq=1, started=True, message="started"), at(10))
    assert started is not None and started.previous_state is JobState.RUNNING
    assert started.job.start_time == at(10) and started.job.current_run.start_time == at(10)
    assert (started.event.seq, started.event.message, started.event.task_id) == (3, "started", "task-1")

    again = store.update_run(
        "task-1", RunUpdate(executor_seq=2, started=True, progress=0.5, message="50%"), at(11)
    )
    assert again.job.start_time == at(10)  # the first start stays
    assert (again.event.progress, again.job.current_run.progress, again.job.current_run.executor_seq) == (
        0.5,
        0.5,
        2,
    )
    stale = store.update_run("task-1", RunUpdate(executor_seq=1, progress=0.6), at(12))
    assert stale.job.current_run.executor_seq == 2  # never goes back

    done = store.update_run(
        "task-1",
        RunUpdate(
            executor_seq=3,
            final_state=JobState.SUCCEEDED,
            data=DataRef("2026/03/14/JOB-20260314-00001.h5", "ab" * 32, 10),
            summary={"t1_us": 42.5, "fidelity": 0.98},
            message="finished",
        ),
        at(20),
    )

    assert done.previous_state is JobState.RUNNING
    assert (done.job.state, done.job.end_time, done.job.error, done.job.cancel_requested) == (
        JobState.SUCCEEDED,
        at(20),
        None,
        False,
    )
    run = done.job.current_run
    assert (run.state, run.start_time, run.end_time, run.progress, run.executor_seq) == (
        JobState.SUCCEEDED,
        at(10),
        at(20),
        1.0,
        3,
    )
    assert (run.data_file_path, run.summary, run.error) == (
        "2026/03/14/JOB-20260314-00001.h5",
        {"t1_us": 42.5, "fidelity": 0.98},
        None,
    )
    assert (done.event.state, done.event.progress, done.event.message) == (
        JobState.SUCCEEDED,
        1.0,
        "finished",
    )
    assert store.get(job.job_id) == done.job
    assert_utc(store.get(job.job_id).current_run.end_time)

    assert store.update_run("task-1", RunUpdate(progress=0.9), at(21)) is None
    assert store.update_run("no-such-task", RunUpdate(progress=0.9), at(21)) is None
    assert store.get(job.job_id).last_seq == 6


def test_update_run_records_pinned_config_revisions(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1", at(1))
    pins = {"hardware_config": "CFG-HW-20260314-00002"}
    pinned = store.update_run("task-1", RunUpdate(config_revisions=pins, message="configs pinned"), at(2))
    assert pinned.job.current_run.config_revisions == pins
    later = store.update_run("task-1", RunUpdate(executor_seq=1, started=True), at(3))
    assert later.job.current_run.config_revisions == pins  # kept by later updates
    assert store.get(job.job_id).current_run.config_revisions == pins


def test_a_runs_code_is_stored_with_its_end_and_kept_by_a_rerun(store: JobStore) -> None:
    code = repository_code()
    job = submit(store, body={"experiment_class": "Pulse", "experiment_commit": "ef" * 20})
    claim(store, DEVICE, "task-1", at(1))
    started = store.update_run("task-1", RunUpdate(executor_seq=1, started=True), at(2))
    assert started.job.current_run.code is None  # not before the run ends
    done = store.update_run(
        "task-1", RunUpdate(executor_seq=2, final_state=JobState.SUCCEEDED, code=code), at(3)
    )
    assert done.job.current_run.code == code
    assert store.get(job.job_id).current_run.code == code
    assert store.list_runs(job.job_id, 0, 10)[0].code == code

    store.rerun(job.job_id, None, "", at(4))
    claim(store, DEVICE, "task-2", at(5))
    failed = store.update_run(
        "task-2",
        RunUpdate(final_state=JobState.FAILED, error=ErrorDetail("PROGRAM_ERROR", "boom")),
        at(6),
    )
    assert failed.job.current_run.code is None  # failed before its experiment was loaded
    assert failed.job.payload.body["experiment_commit"] == "ef" * 20  # the job keeps its commit
    first, second = store.list_runs(job.job_id, 0, 10)
    assert (first.code, second.code) == (code, None)


def test_update_run_records_a_failure(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1", at(1))
    store.update_run("task-1", RunUpdate(started=True, progress=0.25), at(2))

    change = store.update_run(
        "task-1",
        RunUpdate(final_state=JobState.FAILED, error=ErrorDetail("QICK_TIMEOUT", "board did not answer")),
        at(3),
    )

    assert change is not None
    failed = change.job
    assert (failed.state, failed.end_time) == (JobState.FAILED, at(3))
    assert failed.error == ErrorDetail("QICK_TIMEOUT", "board did not answer")
    assert (failed.current_run.state, failed.current_run.progress) == (JobState.FAILED, 0.25)
    assert failed.current_run.error == ErrorDetail("QICK_TIMEOUT", "board did not answer")
    assert (change.event.state, change.event.progress) == (JobState.FAILED, 0.25)
    assert store.get(job.job_id) == failed
    # The device is free again.
    assert store.running_job(DEVICE) is None


def test_events_are_numbered_from_one_without_gaps(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1", at(1))
    store.request_cancel(job.job_id, "", at(2))
    for step in range(1, 5):
        store.update_run("task-1", RunUpdate(executor_seq=step, progress=step / 10), at(2 + step))
    finish(store, "task-1", at(9), state=JobState.CANCELLED)

    events = store.events_after(job.job_id, 0)

    assert [e.seq for e in events] == list(range(1, 9))
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert events[-1].state is JobState.CANCELLED
    assert store.get(job.job_id).last_seq == 8
    assert [e.seq for e in store.events_after(job.job_id, 5)] == [6, 7, 8]
    assert [e.seq for e in store.events_after(job.job_id, 2, limit=3)] == [3, 4, 5]
    assert store.events_after(job.job_id, 8) == []
    assert store.events_after("JOB-20260314-99999", 0) == []


def test_recent_run_seconds_are_successful_runs_newest_first(store: JobStore) -> None:
    start = 100.0
    for i, seconds in enumerate([10.0, 20.0, 30.5]):
        submit(store)
        claim(store, DEVICE, f"ok-{i}", at(start))
        finish(store, f"ok-{i}", at(start + seconds), started=at(start))
        start += 100
    submit(store)
    claim(store, DEVICE, "failed", at(start))
    finish(store, "failed", at(start + 5), state=JobState.FAILED, started=at(start))
    submit(store)
    claim(store, DEVICE, "never-started", at(start + 10))
    finish(store, "never-started", at(start + 11))
    submit(store, device=OTHER)
    claim(store, OTHER, "elsewhere", at(start))
    finish(store, "elsewhere", at(start + 99), started=at(start))

    assert store.recent_run_seconds(DEVICE, 10) == [30.5, 20.0, 10.0]
    assert store.recent_run_seconds(DEVICE, 2) == [30.5, 20.0]
    assert store.recent_run_seconds("qpu-idle", 10) == []


# -- re-runs ---------------------------------------------------------------------------------------------
def test_rerun_queues_a_finished_job_behind_waiting_ones_with_a_new_run(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1", at(1))
    finish(store, "task-1", at(2), state=JobState.FAILED)
    waiting = submit(store, at(3))

    fixed = Payload(JobKind.LAB_EXPERIMENT, {"experiment": "t1", "reps": 200})
    change = store.rerun(job.job_id, fixed, "", at(4))
    assert change.previous_state is JobState.FAILED
    again = change.job
    assert (again.state, again.error, again.end_time, again.start_time) == (JobState.QUEUED, None, None, None)
    assert again.payload == fixed and again.run_count == 1
    assert change.event.message == "queued again (run 2)"
    assert store.queue_position(again) == 2  # behind the job that was already waiting

    assert claim(store, DEVICE, "task-2", at(5)).job_id == waiting.job_id
    finish(store, "task-2", at(6))
    rerun = claim(store, DEVICE, "task-3", at(7))
    assert (rerun.job_id, rerun.current_run.attempt, rerun.run_count) == (job.job_id, 2, 2)
    finish(store, "task-3", at(8))

    runs = store.list_runs(job.job_id, 0, 10)
    assert [(r.task_id, r.attempt, r.state) for r in runs] == [
        ("task-1", 1, JobState.FAILED),
        ("task-3", 2, JobState.SUCCEEDED),
    ]
    assert runs[0].payload.body == {"experiment": "t1", "reps": 100}  # each run keeps its own settings
    assert runs[1].payload == fixed and runs[1].job_id == job.job_id
    assert [r.attempt for r in store.list_runs(job.job_id, 1, 10)] == [2]


def test_rerun_refuses_active_jobs_and_dedups_by_request_id(store: JobStore) -> None:
    job = submit(store)
    with pytest.raises(FailedPrecondition) as info:
        store.rerun(job.job_id, None, "", at(1))
    assert info.value.reason == "JOB_NOT_TERMINAL"
    store.cancel_queued(job.job_id, "", at(1))
    first = store.rerun(job.job_id, None, "rr-1", at(2))
    retry = store.rerun(job.job_id, None, "rr-1", at(3))
    assert retry.job.last_seq == first.job.last_seq  # nothing queued twice
    assert retry.job.state is JobState.QUEUED
    with pytest.raises(NotFound):
        store.rerun("JOB-20260314-09999", None, "", at(4))
    with pytest.raises(NotFound):
        store.list_runs("JOB-20260314-09999", 0, 10)


# -- provider runs -----------------------------------------------------------------------------------
def test_provider_devices_run_several_jobs_and_keep_provider_ids_and_results(store: JobStore) -> None:
    jobs = [submit(store, kind=JobKind.CIRCUIT, device="local:aer_simulator") for _ in range(3)]
    claimed = [store.claim_next("local:aer_simulator", f"t{i}", at(i), max_running=2) for i in range(3)]
    assert [c.job.job_id if c else None for c in claimed] == [jobs[0].job_id, jobs[1].job_id, None]

    update = RunUpdate(provider_task_ids=["local/1", "local/2"], provider_submission_id="sub-1", started=True)
    run = store.update_run("t0", update, at(5)).job.current_run
    assert (run.provider_task_ids, run.provider_submission_id) == (["local/1", "local/2"], "sub-1")
    done = store.update_run("t0", RunUpdate(final_state=JobState.SUCCEEDED, result_json='{"a": 1}'), at(6))
    assert (done.job.current_run.result_json, done.job.current_run.result_time) == ('{"a": 1}', at(6))
    store.store_result("t0", '{"a": 2}', at(7))  # a refetch replaces the cache
    cached = store.get(jobs[0].job_id).current_run
    assert (cached.result_json, cached.result_time, cached.provider_task_ids) == (
        '{"a": 2}',
        at(7),
        ["local/1", "local/2"],
    )
    assert store.claim_next("local:aer_simulator", "t3", at(8), max_running=2).job.job_id == jobs[2].job_id


# -- group commit and pipelined dispatch ---------------------------------------------------------------------
def test_submit_many_queues_every_job_in_order_with_positions(store: JobStore) -> None:
    before = submit(store, priority=5)
    outcomes = store.submit_many(
        [
            new_job(priority=0, request_id="r-1"),
            new_job(priority=5),
            new_job(priority=0, request_id="r-1"),  # the same request twice in one batch
            new_job(device=OTHER),
            new_job(priority=0),
        ],
        at(1),
    )

    assert [o.created for o in outcomes] == [True, True, False, True, True]
    jobs = [o.change.job for o in outcomes]
    assert [j.job_id for j in jobs] == [
        "JOB-20260314-00002",
        "JOB-20260314-00003",
        "JOB-20260314-00002",
        "JOB-20260314-00004",
        "JOB-20260314-00005",
    ]
    # Positions right after the batch: the priority-5 job overtakes the batch's priority-0 jobs.
    assert [o.position for o in outcomes if o.created] == [3, 2, 1, 4]
    for outcome in outcomes:
        if outcome.created:
            assert store.get(outcome.change.job.job_id) == outcome.change.job
            assert store.queue_position(outcome.change.job) == outcome.position
    assert store.queued_count(DEVICE) == 4 and store.queued_count(OTHER) == 1
    again = store.submit_many([new_job(request_id="r-1"), new_job(priority=9)], at(2))
    assert [o.created for o in again] == [False, True]
    assert again[0].change.job.job_id == jobs[0].job_id and again[1].position == 1
    assert store.queue_position(store.get(before.job_id)) == 2  # behind the priority-9 job


def test_queued_counts_follow_every_way_in_and_out_of_the_queue(store: JobStore) -> None:
    a = submit(store, priority=1)
    b = submit(store, priority=1)
    claim(store, DEVICE, "task-a")
    assert store.queued_count(DEVICE) == 1
    store.release_claim("task-a", "back", at(1))
    assert store.queued_count(DEVICE) == 2
    claim(store, DEVICE, "task-a2")
    finish(store, "task-a2", at(2))
    store.cancel_queued(b.job_id, "", at(3))
    assert store.queued_count(DEVICE) == 0
    store.rerun(a.job_id, None, "", at(4))
    assert store.queued_count(DEVICE) == 1
    assert store.queue_position(store.get(a.job_id)) == 1


def reason(summary: str = "next in line") -> Reason:
    return Reason("priority-fifo", summary, {"priority": 0})


def stage(store: JobStore, job: Job, task_id: str, revisions: dict | None = None) -> Job | None:
    staged = store.stage([StageRequest(job.job_id, Claim(task_id, revisions or {}, reason()))], at(1))
    return staged[0] if staged else None


def test_staged_runs_are_recorded_in_one_call_with_pins_and_reasons(store: JobStore) -> None:
    jobs = [submit(store) for _ in range(3)]
    requests = [
        StageRequest(j.job_id, Claim(f"task-{i}", {"hardware_config": "CFG-HW-1"}, reason(f"#{i}")))
        for i, j in enumerate(jobs)
    ]
    staged = store.stage(requests, at(1))
    assert [j.staged_task_id for j in staged] == ["task-0", "task-1", "task-2"]
    job = store.get(jobs[1].job_id)
    assert job.state is JobState.QUEUED and job.staged_task_id == "task-1" and job.run_count == 1
    run = job.current_run
    assert (run.state, run.staged, run.config_revisions, run.reason) == (
        JobState.QUEUED,
        True,
        {"hardware_config": "CFG-HW-1"},
        reason("#1"),
    )
    assert [j.job_id for j in store.staged_jobs(DEVICE)] == [j.job_id for j in jobs]
    assert store.queued_count(DEVICE) == 3  # staged jobs are still queued
    assert store.stage(requests[:1], at(2)) == []  # staged already: skipped
    assert [q.staged_task_id for q in store.queued_jobs()] == ["task-0", "task-1", "task-2"]


def test_a_staged_run_starts_ends_or_goes_back_to_its_place(store: JobStore) -> None:
    first, second, third = (submit(store) for _ in range(3))
    for job, task in ((first, "task-1"), (second, "task-2"), (third, "task-3")):
        stage(store, job, task, {"hardware_config": "CFG-HW-1"})
    # Accepted while staged: only the cursor moves (no event).
    assert store.apply_updates([("task-1", RunUpdate(1, message="accepted"))], at(2)) == []
    changes = store.apply_updates(
        [
            ("task-1", RunUpdate(2, started=True, message="started")),
            (
                "task-1",
                RunUpdate(
                    3, final_state=JobState.SUCCEEDED, message="succeeded", data=DataRef("a.h5", "ab", 3)
                ),
            ),
            ("task-2", RunUpdate(2, started=True, message="started")),
        ],
        at(3),
    )
    assert [(c.job.job_id, c.event.state) for c in changes] == [
        (first.job_id, JobState.RUNNING),
        (first.job_id, JobState.SUCCEEDED),
        (second.job_id, JobState.RUNNING),
    ]
    done = store.get(first.job_id)
    assert done.current_run.data == DataRef("a.h5", "ab", 3) and done.current_run.data_file_path == "a.h5"
    assert not done.current_run.staged and done.current_run.executor_seq == 3
    running = store.get(second.job_id)
    assert running.state is JobState.RUNNING and running.staged_task_id == "" and running.start_time == at(3)
    assert running.current_run.config_revisions == {"hardware_config": "CFG-HW-1"}
    assert store.queued_count(DEVICE) == 1
    # Taken back: the run is gone, the job queued in its place (first in line again).
    back = store.unstage(["task-3"], at(4))
    assert [j.job_id for j in back] == [third.job_id]
    again = store.get(third.job_id)
    assert again.staged_task_id == "" and again.run_count == 0 and again.current_run is None
    assert store.queue_position(again) == 1
    assert store.apply_updates([("task-3", RunUpdate(2, started=True))], at(5)) == []  # forgotten


def test_log_lines_of_a_run_are_events_of_their_own_kept_with_the_job(store: JobStore) -> None:
    job = submit(store)
    stage(store, job, "task-1")
    store.apply_updates([("task-1", RunUpdate(2, started=True, progress=0.5, message="started"))], at(2))
    lines = LogLines(("first line", "[qsched] 3 log line(s) dropped (over 20 lines/s)", "ü"), 3)
    [change] = store.apply_updates([("task-1", RunUpdate(3, message="log: 3 line(s)", log=lines))], at(3))
    assert change.event.log == lines and change.event.state is JobState.RUNNING
    assert change.event.progress == 0.5 and change.job.current_run.executor_seq == 3
    stored = store.events_after(job.job_id, 0)
    assert [e.log for e in stored] == [None, None, lines]
    assert stored[-1].task_id == "task-1" and stored[-1].message == "log: 3 line(s)"


def test_a_staged_run_can_end_without_starting_and_a_cancel_drops_it(store: JobStore) -> None:
    refused, cancelled = submit(store), submit(store)
    stage(store, refused, "task-1")
    stage(store, cancelled, "task-2")
    failed = store.apply_updates(
        [("task-1", RunUpdate(final_state=JobState.FAILED, error=ErrorDetail("INVALID_EXPERIMENT", "no")))],
        at(2),
    )
    assert failed[0].job.state is JobState.FAILED and failed[0].previous_state is JobState.QUEUED
    assert store.get(refused.job_id).current_run.state is JobState.FAILED
    change = store.cancel_queued(cancelled.job_id, "no longer needed", at(3))
    assert change.job.state is JobState.CANCELLED and change.job.run_count == 0
    assert store.staged_jobs(DEVICE) == [] and store.queued_count(DEVICE) == 0


def test_submit_can_stage_a_job_in_its_own_transaction(store: JobStore) -> None:
    news = [new_job(), new_job()]
    outcomes = store.submit_many(
        news, at(1), {1: Claim("task-1", {"hardware_config": "CFG-1"}, reason("idle"))}
    )
    claimed = store.get(outcomes[1].change.job.job_id)
    assert outcomes[1].change.job.staged_task_id == "task-1" and claimed.current_run.staged
    assert claimed.current_run.reason == reason("idle") and claimed.state is JobState.QUEUED
    assert claimed.staged_task_id == "task-1" and [j.job_id for j in store.staged_jobs(DEVICE)] == [
        claimed.job_id
    ]
    assert store.get(outcomes[0].change.job.job_id).staged_task_id == ""


def test_apply_updates_applies_what_arrived_at_once_in_order(store: JobStore) -> None:
    job = submit(store)
    claim(store, DEVICE, "task-1")
    changes = store.apply_updates(
        [
            ("task-1", RunUpdate(1, message="accepted")),
            ("task-1", RunUpdate(2, started=True, message="started")),
            (
                "task-1",
                RunUpdate(3, final_state=JobState.SUCCEEDED, message="succeeded", data=DataRef("d/a.h5")),
            ),
            ("task-1", RunUpdate(4, progress=0.5, message="too late")),  # the run is over: ignored
        ],
        at(1),
    )
    assert [c.event.message for c in changes] == ["accepted", "started", "succeeded"]
    assert [c.event.seq for c in changes] == [3, 4, 5]
    done = store.get(job.job_id)
    assert done.state is JobState.SUCCEEDED and done.current_run.executor_seq == 3
    assert done.current_run.data_file_path == "d/a.h5" and done.start_time == at(1)
    assert [e.message for e in store.events_after(job.job_id, 0)][-3:] == ["accepted", "started", "succeeded"]


def test_a_start_ends_the_run_the_executor_lost_unseen_within_one_batch(store: JobStore) -> None:
    lost, second, third = (submit(store) for _ in range(3))
    claim(store, DEVICE, "task-1")
    store.apply_updates([("task-1", RunUpdate(2, started=True, message="started"))], at(1))
    stage(store, second, "task-2")
    stage(store, third, "task-3")
    changes = store.apply_updates(
        [
            ("task-2", RunUpdate(1, started=True, message="started")),  # task-1 never ended here
            ("task-2", RunUpdate(2, final_state=JobState.SUCCEEDED, message="succeeded")),
            ("task-1", RunUpdate(3, progress=0.5, message="late")),  # failed above: ignored
            ("task-3", RunUpdate(1, started=True, message="started")),
        ],
        at(2),
    )
    assert [(c.job.job_id, c.event.state) for c in changes] == [
        (second.job_id, JobState.RUNNING),
        (second.job_id, JobState.SUCCEEDED),
        (third.job_id, JobState.RUNNING),
    ]
    failed = store.get(lost.job_id)
    assert failed.state is JobState.FAILED and failed.error.reason == "EXECUTOR_LOST"
    assert failed.current_run.state is JobState.FAILED and failed.end_time == at(2)
    assert [e.state for e in store.events_after(lost.job_id, 0)][-1] is JobState.FAILED
    assert [j.job_id for j in store.running_jobs()] == [third.job_id]
    assert store.get(second.job_id).current_run.executor_seq == 2
    assert store.queued_count(DEVICE) == 0


# -- the job's task id (issue 17): allocated when queued, taken by the run --------------------------------
def test_a_job_has_its_task_id_at_submit_and_its_staged_run_takes_it(store: JobStore) -> None:
    job = submit(store)
    assert len(job.task_id) == 36 and job.current_run is None
    assert store.get(job.job_id).task_id == job.task_id
    assert store.job_id_of_task(job.task_id) == job.job_id  # found before any run exists
    assert store.job_id_of_task("no-such-task") is None and store.job_id_of_task("") is None
    # Taken back and staged again: the same id (the run never happened).
    staged = stage(store, job, "")
    assert staged.staged_task_id == job.task_id == staged.current_run.task_id
    store.unstage([job.task_id], at(2))
    assert store.get(job.job_id).task_id == job.task_id
    again = stage(store, job, "")
    assert again.staged_task_id == job.task_id
    started = store.update_run(job.task_id, RunUpdate(1, started=True, message="started"), at(3))
    assert started.job.state is JobState.RUNNING and started.job.task_id == job.task_id
    assert started.job.current_run.task_id == job.task_id


def test_a_claim_at_submit_names_the_task_id_and_a_given_one_is_the_jobs(store: JobStore) -> None:
    outcomes = store.submit_many([new_job(), new_job()], at(1), {1: Claim("task-1", {}, reason("idle"))})
    first, claimed = (o.change.job for o in outcomes)
    assert claimed.task_id == "task-1" == claimed.staged_task_id and first.task_id != claimed.task_id
    staged = stage(store, first, "task-9")  # a named id wins: the job's task id follows the run
    assert staged.task_id == "task-9" and store.job_id_of_task("task-9") == first.job_id


def test_a_provider_claim_takes_the_jobs_task_id_and_keeps_it_when_released(store: JobStore) -> None:
    job = submit(store)
    change = store.claim_next(DEVICE, "", at(1))
    assert change.job.current_run.task_id == job.task_id == change.job.task_id
    released = store.release_claim(job.task_id, "gateway unavailable", at(2))
    assert released.job.state is JobState.QUEUED and released.job.task_id == job.task_id
    assert store.claim_next(DEVICE, "", at(3)).job.current_run.task_id == job.task_id


def test_a_job_cancelled_while_queued_keeps_its_task_id_and_a_rerun_gets_a_new_one(store: JobStore) -> None:
    job = submit(store)
    cancelled = store.cancel_queued(job.job_id, "not needed", at(1))
    assert cancelled.job.state is JobState.CANCELLED and cancelled.job.task_id == job.task_id
    assert store.job_id_of_task(job.task_id) == job.job_id
    rerun = store.rerun(job.job_id, None, "", at(2)).job
    assert rerun.task_id and rerun.task_id != job.task_id
    first_run = store.claim_next(DEVICE, "", at(3)).job
    assert first_run.current_run.task_id == rerun.task_id and first_run.current_run.attempt == 1
    finish(store, rerun.task_id, at(4))
    third = store.rerun(job.job_id, None, "", at(5)).job
    assert third.task_id not in (job.task_id, rerun.task_id)
    assert store.get(job.job_id).current_run.task_id == rerun.task_id  # until the next run exists
    assert store.job_id_of_task(rerun.task_id) == job.job_id  # an earlier run's id still names the job
    staged = stage(store, third, "")
    assert staged.current_run.task_id == third.task_id and staged.current_run.attempt == 2


def test_queued_jobs_carry_the_labels_and_needs_the_queue_policy_gates_on(store: JobStore) -> None:
    """What the queue index is rebuilt from at start-up: reservation, calibration flag, session and
    calibration needs, as for a job queued while the scheduler runs."""
    body = {"experiment": "t1", "calibrations": {"t1_fit": 60}}
    labels = {"reservation": "RES-1", "calibration": "true", "session": "SES-1"}
    job = submit(store, labels=labels, body=body)
    assert store.queued_jobs() == [queued_job(store.get(job.job_id))]
    (entry,) = store.queued_jobs()
    assert (entry.reservation, entry.calibration, entry.session) == ("RES-1", True, "SES-1")
    assert entry.calibrations == (("t1_fit", 60.0),)
