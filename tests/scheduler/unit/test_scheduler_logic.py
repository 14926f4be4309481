"""The scheduler's logic against the in-memory store and executor fakes."""

from __future__ import annotations

import asyncio
import json

import pytest

from qsched_core.execution import Failed, Violation
from qsched_scheduler.domain import (
    MAX_PAYLOAD_BYTES,
    Change,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    Payload,
)
from qsched_scheduler.errors import FailedPrecondition, InvalidArgument, NotFound
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.store.memory import MemoryJobStore
from qsched_scheduler.validation import Submission
from tests.support.memory_executor import MemoryExecutor
from tests.support.waiting import eventually


def lab(cls: str = "AmplitudeRabiExperiment", config: dict | None = None) -> Payload:
    return Payload(
        JobKind.LAB_EXPERIMENT,
        {
            "experiment_class": cls,
            "experiment_module": "exp.rabi",
            "expt_config_json": json.dumps(config or {}),
        },
    )


def sub(priority: int = 0, device: str = "qick", **kw) -> Submission:
    return Submission(device=device, payload=kw.pop("payload", lab()), priority=priority, owner="alice", **kw)


@pytest.fixture
async def env():
    """The engine on a memory store, its board held: each run stays on it until the test ends it."""
    store = MemoryJobStore()
    executor = MemoryExecutor()
    executor.board.hold()
    scheduler = Scheduler.build(store, {"qick": executor}, page_key=b"k" * 32, executor_lost_after_s=0.5)
    await scheduler.start()
    await scheduler.routes.labs["qick"].connected.wait()
    yield scheduler, executor.board, store
    await scheduler.stop()


def finish(board, job_id: str, body=None) -> None:
    assert board.order and board.order[-1] == job_id and board.current, f"{job_id} is not on the board"
    board.finish_current(body)


async def wait_state(scheduler: Scheduler, job_id: str, state: JobState, timeout: float = 5.0) -> Job:
    return await eventually(
        lambda: scheduler.get(job_id), until=lambda job: job.state is state, timeout=timeout, what=f"{state}"
    )


async def test_priority_first_then_fifo(env):
    scheduler, board, _ = env
    blocker = (await scheduler.submit(sub(0))).job  # on the board: the rest queue behind it
    await wait_state(scheduler, blocker.job_id, JobState.RUNNING)
    first = (await scheduler.submit(sub(0))).job
    low = (await scheduler.submit(sub(0))).job
    high = (await scheduler.submit(sub(10))).job
    high2 = (await scheduler.submit(sub(10))).job
    # The staged runs they overtake are taken back after the submits return: the board's queue
    # shows it (a run that started meanwhile could not be overtaken any more).
    await eventually(
        lambda: [board.runs[t].job_id for t in board.waiting],
        until=lambda waiting: waiting == [high.job_id, high2.job_id],
        what="the high-priority jobs staged first",
    )
    for _ in range(5):
        current = await eventually(
            lambda: board.order[-1] if board.current else "", what="a run on the board"
        )
        finish(board, current)
        await wait_state(scheduler, current, JobState.SUCCEEDED)
    assert board.order == [blocker.job_id, high.job_id, high2.job_id, first.job_id, low.job_id]


async def test_submit_answers_position_and_estimate(env):
    scheduler, _executor, _ = env
    running = (await scheduler.submit(sub())).job
    await wait_state(scheduler, running.job_id, JobState.RUNNING)
    a = (await scheduler.submit(sub())).job
    b = (await scheduler.submit(sub(5))).job
    assert (a.queue_position, b.queue_position) == (1, 1)
    a_now = await scheduler.get(a.job_id)
    assert a_now.queue_position == 2
    assert a_now.estimated_start_time > b.estimated_start_time


async def test_idle_device_dispatches_without_polling(env):
    scheduler, board, _ = env
    job = (await scheduler.submit(sub())).job
    # Claimed in the transaction that inserted it: staged already when submit answers.
    assert job.state is JobState.QUEUED and job.staged_task_id and job.current_run.staged
    assert job.current_run.reason.summary.startswith("the device was idle")
    await asyncio.wait_for(board.started.wait(), 1.0)
    assert board.order == [job.job_id]


async def test_request_id_makes_submit_idempotent(env):
    scheduler, _, store = env
    one = await scheduler.submit(sub(request_id="r-1"))
    two = await scheduler.submit(sub(request_id="r-1"))
    assert one.created and not two.created
    assert one.job.job_id == two.job.job_id
    jobs = store.list_jobs(JobFilter(), None, 10)
    assert len(jobs) == 1


@pytest.mark.parametrize(
    ("submission", "reason", "error"),
    [
        (sub(priority=101), "INVALID_PRIORITY", InvalidArgument),
        (sub(priority=-101), "INVALID_PRIORITY", InvalidArgument),
        (sub(device="nope"), "DEVICE_NOT_FOUND", NotFound),
        (sub(device=""), "DEVICE_REQUIRED", InvalidArgument),
        (sub(payload=None), "PAYLOAD_REQUIRED", InvalidArgument),
        (sub(payload_bytes=MAX_PAYLOAD_BYTES + 1), "PAYLOAD_TOO_LARGE", InvalidArgument),
        (sub(payload=lab(cls="not a class")), "INVALID_EXPERIMENT", InvalidArgument),
        (
            sub(payload=Payload(JobKind.CIRCUIT, {"qasm": ["x"], "shots": 1})),
            "KIND_NOT_SUPPORTED",
            InvalidArgument,
        ),
        (
            sub(payload=Payload(JobKind.LAB_EXPERIMENT, {**lab().body, "expt_config_json": "[1]"})),
            "INVALID_JSON",
            InvalidArgument,
        ),
        (Submission(device="qick", payload=lab(), priority=0, owner=" "), "INVALID_OWNER", InvalidArgument),
    ],
)
async def test_bad_submissions_write_nothing(env, submission, reason, error):
    scheduler, _, store = env
    with pytest.raises(error) as info:
        await scheduler.submit(submission)
    assert info.value.reason == reason
    assert store.list_jobs(JobFilter(), None, 10) == []


@pytest.mark.parametrize(
    "job_id", ["", "JOB-1", "JOB-20261399-00001", "job-20260101-00001", "JOB-20260101-1"]
)
async def test_malformed_job_ids(env, job_id):
    scheduler, _, _ = env
    with pytest.raises(InvalidArgument) as info:
        await scheduler.get(job_id)
    assert info.value.reason == "INVALID_JOB_ID"


async def test_unknown_job(env):
    scheduler, _, _ = env
    with pytest.raises(NotFound) as info:
        await scheduler.get("JOB-20260101-00042")
    assert info.value.reason == "JOB_NOT_FOUND"


async def test_cancel_queued_and_running(env):
    scheduler, board, _ = env
    running = (await scheduler.submit(sub())).job
    await wait_state(scheduler, running.job_id, JobState.RUNNING)
    queued = (await scheduler.submit(sub())).job
    cancelled = await scheduler.cancel(queued.job_id, "changed my mind")
    assert cancelled.state is JobState.CANCELLED
    assert (await scheduler.cancel(queued.job_id)).state is JobState.CANCELLED  # idempotent
    stopping = await scheduler.cancel(running.job_id, "stop")
    assert stopping.state is JobState.RUNNING and stopping.cancel_requested
    done = await wait_state(scheduler, running.job_id, JobState.CANCELLED)
    assert done.error.reason == "CANCELLED"
    assert [c.task_ids for c in board.commands if type(c).__name__ == "CancelRuns"] == [
        (done.current_run.task_id,)
    ]


async def test_cancel_finished_job_is_refused(env):
    scheduler, board, _ = env
    job = (await scheduler.submit(sub())).job
    await asyncio.wait_for(board.started.wait(), 5)
    finish(board, job.job_id)
    await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    with pytest.raises(FailedPrecondition) as info:
        await scheduler.cancel(job.job_id)
    assert info.value.reason == "JOB_ALREADY_FINISHED"


async def test_delete_only_terminal(env):
    scheduler, _, _ = env
    job = (await scheduler.submit(sub())).job
    with pytest.raises(FailedPrecondition) as info:
        await scheduler.delete(job.job_id)
    assert info.value.reason == "JOB_NOT_TERMINAL"
    await scheduler.cancel(job.job_id)
    await wait_state(scheduler, job.job_id, JobState.CANCELLED)
    await scheduler.delete(job.job_id)
    with pytest.raises(NotFound):
        await scheduler.get(job.job_id)


async def test_failed_run_carries_reason(env):
    scheduler, board, _ = env
    job = (await scheduler.submit(sub())).job
    await asyncio.wait_for(board.started.wait(), 5)
    finish(board, job.job_id, Failed("PROGRAM_ERROR", "boom"))
    failed = await wait_state(scheduler, job.job_id, JobState.FAILED)
    assert (failed.error.reason, failed.error.message) == ("PROGRAM_ERROR", "boom")


def seq_of(item) -> int:
    return (item.event if isinstance(item, Change) else item).seq


async def collect(stream) -> list:
    items = []
    async for item in stream:
        items.append(item)
    return items


async def test_watch_snapshot_then_events_until_terminal(env):
    scheduler, board, _ = env
    job = (await scheduler.submit(sub())).job
    stream = scheduler.watch(job.job_id)
    snapshot = await anext(stream)
    watcher = asyncio.create_task(collect(stream))
    await asyncio.wait_for(board.started.wait(), 5)
    finish(board, job.job_id)
    items = [snapshot, *await asyncio.wait_for(watcher, 5)]
    assert isinstance(items[0], Job) and items[0].state in (JobState.QUEUED, JobState.RUNNING)
    seqs = [seq_of(i) for i in items[1:]]
    assert seqs == list(range(items[0].last_seq + 1, items[0].last_seq + 1 + len(seqs)))
    last = items[-1]
    assert isinstance(last, Change) and last.event.state is JobState.SUCCEEDED
    assert last.job.current_run.data_file_path.endswith(".h5")
    assert last.job.current_run.data.name == last.job.current_run.data_file_path


async def test_watch_resume_replays_missed_events(env):
    scheduler, board, _ = env
    job = (await scheduler.submit(sub())).job
    await asyncio.wait_for(board.started.wait(), 5)
    finish(board, job.job_id)
    done = await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    items = await collect(scheduler.watch(job.job_id, after_seq=1))
    assert isinstance(items[0], Job)
    assert [seq_of(e) for e in items[1:]] == list(range(2, done.last_seq + 1))
    assert all(isinstance(e, Event) for e in items[1:-1])
    assert isinstance(items[-1], Change) and items[-1].job.state is JobState.SUCCEEDED
    # A finished job watched from the start: the snapshot alone.
    only = await collect(scheduler.watch(job.job_id))
    assert len(only) == 1 and only[0].state is JobState.SUCCEEDED


async def test_lagging_watcher_catches_up_from_the_store(env):
    scheduler, board, _ = env
    scheduler.bus._maxsize = 2  # tiny buffer: the watcher must lag
    job = (await scheduler.submit(sub())).job
    await asyncio.wait_for(board.started.wait(), 5)
    stream = scheduler.watch(job.job_id)
    snapshot = await anext(stream)
    board.progress_steps = 19
    finish(board, job.job_id)
    await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    rest = [item async for item in stream]
    seqs = [seq_of(i) for i in rest]
    assert seqs == list(range(snapshot.last_seq + 1, snapshot.last_seq + 1 + len(seqs)))
    assert (rest[-1].event if isinstance(rest[-1], Change) else rest[-1]).state is JobState.SUCCEEDED


async def test_unavailable_executor_keeps_job_queued():
    store, executor = MemoryJobStore(), MemoryExecutor()
    executor.unavailable = True
    scheduler = Scheduler.build(store, {"qick": executor}, page_key=b"k" * 32)
    await scheduler.start()
    try:
        job = (await scheduler.submit(sub())).job
        now = await scheduler.get(job.job_id)
        assert now.state is JobState.QUEUED and now.run_count == 0 and not now.staged_task_id
        executor.unavailable = False
        await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    finally:
        await scheduler.stop()


async def test_list_pagination_and_tokens(env):
    scheduler, _, _ = env
    ids = [(await scheduler.submit(sub(priority=i % 3))).job.job_id for i in range(7)]
    flt = JobFilter(view=ListView.HISTORY)
    seen, token = [], ""
    while True:
        page, token = await scheduler.list_jobs(flt, 3, token)
        seen += [j.job_id for j in page]
        if not token:
            break
    assert seen == list(reversed(ids))
    with pytest.raises(InvalidArgument) as info:
        await scheduler.list_jobs(
            JobFilter(view=ListView.QUEUE), 3, (await scheduler.list_jobs(flt, 3, ""))[1]
        )
    assert info.value.reason == "PAGE_TOKEN_MISMATCH"
    with pytest.raises(InvalidArgument) as info:
        await scheduler.list_jobs(flt, 3, "garbage")
    assert info.value.reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument) as info:
        await scheduler.list_jobs(flt, -1, "")
    assert info.value.reason == "INVALID_PAGE_SIZE"


async def test_submit_is_checked_on_the_device():
    store, executor = MemoryJobStore(), MemoryExecutor()
    executor.board.violations["Rejected"] = [Violation("expt.gain", "too high")]
    scheduler = Scheduler.build(store, {"qick": executor}, page_key=b"k" * 32)
    await scheduler.start()
    try:
        with pytest.raises(InvalidArgument) as info:
            await scheduler.submit(sub(payload=lab(cls="Rejected")))
        assert (
            info.value.reason == "INVALID_EXPERIMENT_CONFIG" and info.value.metadata["field"] == "expt.gain"
        )
        assert store.list_jobs(JobFilter(), None, 10) == []
        executor.unavailable = True  # the executor cannot answer: queued, checked when handed over
        assert (await scheduler.submit(sub(payload=lab(cls="Rejected")))).created
    finally:
        await scheduler.stop()


class FakePinner:
    """Pins a main revision per type; refuses or is down on request."""

    def __init__(self):
        self.main = {"hardware_config": ("CFG-HW-20260101-00001", "ab" * 32)}
        self.down = False
        self.refuse = ""
        self.calls: list[tuple[str, dict, dict]] = []

    async def pin(self, job_id, revision_ids, overrides, creator):
        from qsched_scheduler.config_port import ConfigsUnavailable, PinnedConfig, PinRefused

        self.calls.append((job_id, dict(revision_ids), dict(overrides)))
        if self.down:
            raise ConfigsUnavailable("down")
        if self.refuse:
            raise PinRefused(self.refuse, "no main revision of hardware_config")
        picks = {t: revision_ids.get(t, rev) for t, (rev, _) in self.main.items()}
        return [PinnedConfig(t, r, self.main[t][1]) for t, r in picks.items()]

    async def close(self):
        pass


@pytest.fixture
async def pinned_env():
    """No main-revision cache: every pin is a PinConfigs call."""
    store, executor, pinner = MemoryJobStore(), MemoryExecutor(), FakePinner()
    scheduler = Scheduler.build(store, {"qick": executor}, page_key=b"k" * 32, pinner=pinner)
    await scheduler.start()
    yield scheduler, executor.board, pinner
    await scheduler.stop()


async def test_runs_pin_configs_and_pass_them_to_the_executor(pinned_env):
    scheduler, executor, pinner = pinned_env
    job = (await scheduler.submit(sub())).job
    done = await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    assert done.current_run.config_revisions == {"hardware_config": "CFG-HW-20260101-00001"}
    assert [
        (c.config_type, c.revision_id) for c in executor.runs[done.current_run.task_id].request.configs
    ] == [("hardware_config", "CFG-HW-20260101-00001")]
    # A push to main between runs: the next job pins the new revision, the finished one keeps the old.
    pinner.main["hardware_config"] = ("CFG-HW-20260101-00002", "cd" * 32)
    later = await wait_state(scheduler, (await scheduler.submit(sub())).job.job_id, JobState.SUCCEEDED)
    assert later.current_run.config_revisions == {"hardware_config": "CFG-HW-20260101-00002"}
    assert (await scheduler.get(job.job_id)).current_run.config_revisions["hardware_config"].endswith("00001")


async def test_named_revisions_and_overrides_go_to_the_pinner(pinned_env):
    scheduler, _, pinner = pinned_env
    body = {**lab().body, "config_revisions": {"hardware_config": "CFG-HW-20251231-00007"}}
    body["config_overrides"] = {"multiphoton_config": "a: 1\n"}
    job = (await scheduler.submit(sub(payload=Payload(JobKind.LAB_EXPERIMENT, body)))).job
    done = await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
    assert done.current_run.config_revisions == {"hardware_config": "CFG-HW-20251231-00007"}
    assert pinner.calls[-1] == (
        job.job_id,
        {"hardware_config": "CFG-HW-20251231-00007"},
        {"multiphoton_config": "a: 1\n"},
    )


async def test_pin_refused_fails_the_job_and_unavailable_keeps_it_queued(pinned_env):
    scheduler, executor, pinner = pinned_env
    pinner.refuse = "NO_MAIN_REVISION"
    failed = await wait_state(scheduler, (await scheduler.submit(sub())).job.job_id, JobState.FAILED)
    assert failed.error.reason == "NO_MAIN_REVISION" and not executor.runs
    pinner.refuse, pinner.down = "", True
    job = (await scheduler.submit(sub())).job
    await eventually(lambda: len(pinner.calls), until=lambda n: n >= 2, what="a pin attempt while down")
    assert (await scheduler.get(job.job_id)).state is JobState.QUEUED
    pinner.down = False
    await wait_state(scheduler, job.job_id, JobState.SUCCEEDED)
