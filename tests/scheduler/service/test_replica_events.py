"""Events across scheduler replicas (issue 15, item 2): two real schedulers on one PostgreSQL
database, one dispatching to the executor double, the other serving only (`dispatch=False`).
A watcher on the replica that did not make a change hears it: WatchJob (every seq, in order, to
the end), WatchQueue, `wait_for_completion` and `qsched wait`; and a listening connection the
database drops is caught up with no gap."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import pytest

from qsched import JobClient
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.cli.main import main
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state, lab_request
from tests.support.stack import running_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres

TERMINAL = (pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED)


@contextlib.asynccontextmanager
async def replicas(tmp_path, url: str, executor_address: str):
    """(dispatching stub, serving-only stub, serving-only address): the two replicas."""
    common = {"lab_devices": {"qick": executor_address}, "pin_configs": False, "database_url": url}
    async with (
        running_service("scheduler", tmp_path / "a", **common) as a,
        running_service("scheduler", tmp_path / "b", dispatch=False, **common) as b,
        authed_channel(a) as channel_a,
        authed_channel(b) as channel_b,
    ):
        yield pb_grpc.JobServiceStub(channel_a), pb_grpc.JobServiceStub(channel_b), b


@pytest.fixture
async def two(tmp_path, fake_executor, postgres_databases):
    fake, address = fake_executor
    url = postgres_databases()
    async with replicas(tmp_path, url, address) as (a, b, b_address):
        yield a, b, fake, b_address, url


async def collect(stream) -> list[pb.WatchJobResponse]:
    return [m async for m in stream]


def contiguous(messages: list[pb.WatchJobResponse]) -> list[int]:
    """The seqs of the events after the snapshot; asserts they follow it without a gap."""
    assert messages[0].HasField("snapshot")
    seqs = [m.event.seq for m in messages[1:]]
    first = messages[0].snapshot.last_seq + 1
    assert seqs == list(range(first, first + len(seqs))), seqs
    return seqs


async def test_watchjob_on_the_other_replica_sees_every_event_to_the_end(two):
    a, b, fake, *_ = two
    fake.hold = asyncio.Event()  # the run stays on the board until released
    job_id = (await a.SubmitJob(lab_request())).job.job_id
    watch = asyncio.ensure_future(collect(b.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=30)))
    await job_in_state(b, job_id, pb.Job.STATE_RUNNING)
    fake.hold.set()
    messages = await watch
    contiguous(messages)
    last = messages[-1].event
    assert last.state == pb.Job.STATE_SUCCEEDED and last.job.current_run.summary["pi_gain"] == 0.5
    # Everything the dispatching replica logged reached the watcher on the other one.
    on_a = await collect(a.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=1), timeout=10))
    assert [m.event.seq for m in on_a[1:]][-1] == last.seq


async def test_a_job_submitted_on_the_serving_replica_runs_and_is_followed_there(two):
    _, b, fake, *_ = two
    job_id = (await b.SubmitJob(lab_request())).job.job_id  # the dispatching replica is woken
    messages = await collect(b.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=30))
    contiguous(messages)
    assert messages[-1].event.state == pb.Job.STATE_SUCCEEDED
    assert fake.started_jobs == [job_id]


async def test_cancelling_on_the_serving_replica_stops_the_run_on_the_dispatching_one(two):
    a, b, fake, *_ = two
    fake.hold = asyncio.Event()  # without the cancel the run would never end
    job_id = (await a.SubmitJob(lab_request())).job.job_id
    await job_in_state(b, job_id, pb.Job.STATE_RUNNING)
    await b.CancelJob(pb.CancelJobRequest(job_id=job_id, reason="not needed"))
    job = await job_in_state(a, job_id, pb.Job.STATE_CANCELLED)
    assert job.current_run.state == pb.Job.STATE_CANCELLED
    assert len(fake.cancel_calls) == 1


async def test_cancelling_a_job_staged_on_the_dispatching_replica_takes_it_back(two):
    a, b, fake, *_ = two
    fake.hold = asyncio.Event()
    first = (await a.SubmitJob(lab_request())).job.job_id
    await job_in_state(a, first, pb.Job.STATE_RUNNING)
    staged = (await a.SubmitJob(lab_request())).job.job_id
    await eventually(
        lambda: a.GetJob(pb.GetJobRequest(job_id=staged)),
        until=lambda r: r.job.current_run.staged,
        what="the second job staged on the executor",
    )
    await b.CancelJob(pb.CancelJobRequest(job_id=staged, reason="not needed"))
    await job_in_state(a, staged, pb.Job.STATE_CANCELLED)
    third = (await a.SubmitJob(lab_request())).job.job_id
    fake.hold.set()
    await job_in_state(a, third, pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [first, third]  # the cancelled one never ran
    assert (await a.GetJob(pb.GetJobRequest(job_id=staged))).job.state == pb.Job.STATE_CANCELLED


async def test_watchqueue_on_the_other_replica_sees_the_jobs_changes(two):
    a, b, fake, *_ = two
    fake.hold = asyncio.Event()
    stream = b.WatchQueue(pb.WatchQueueRequest(device="qick"), timeout=30)
    first = await stream.read()
    assert first.HasField("snapshot")
    ids = [(await a.SubmitJob(lab_request())).job.job_id for _ in range(3)]
    fake.hold.set()
    states: dict[str, list[int]] = {job_id: [] for job_id in ids}
    while not all(s and s[-1] in TERMINAL for s in states.values()):
        message = await stream.read()
        job = message.change.job
        states[job.job_id].append(job.state)
    stream.cancel()
    for job_id in ids:
        assert states[job_id][0] == pb.Job.STATE_QUEUED, states  # submitted (on the other replica)
        assert states[job_id][-1] == pb.Job.STATE_SUCCEEDED, states
        assert pb.Job.STATE_RUNNING in states[job_id], states


async def test_waiting_on_the_other_replica_for_a_job_that_ended_returns_at_once(two, monkeypatch, tmp_path):
    a, b, fake, b_address, _ = two
    job_id = (await a.SubmitJob(lab_request())).job.job_id
    await job_in_state(a, job_id, pb.Job.STATE_SUCCEEDED)
    with JobClient(b_address) as client:
        result = await asyncio.to_thread(client.wait_for_completion, job_id, timeout=10, verbose=False)
    assert result.is_successful()
    monkeypatch.setenv("QSCHED_USER", "alice")
    monkeypatch.setenv("QSCHED_CACHE_DIR", str(tmp_path / "cache"))  # `wait` fetches the data file
    code = await asyncio.to_thread(main, ["wait", job_id, "--address", b_address, "--timeout", "10"])
    assert code == 0
    # And for a job still running when the wait starts: it hears the end from the other replica.
    fake.hold = asyncio.Event()
    job_id = (await a.SubmitJob(lab_request())).job.job_id
    await job_in_state(b, job_id, pb.Job.STATE_RUNNING)
    with JobClient(b_address) as client:
        waiting = asyncio.ensure_future(
            asyncio.to_thread(client.wait_for_completion, job_id, timeout=20, verbose=False)
        )
        fake.hold.set()
        assert (await waiting).is_successful()


async def test_a_dropped_listening_connection_is_caught_up_without_a_gap(two, monkeypatch):
    a, b, fake, _, url = two
    fake.hold = asyncio.Event()
    job_id = (await a.SubmitJob(lab_request())).job.job_id
    await job_in_state(b, job_id, pb.Job.STATE_RUNNING)
    watch = asyncio.ensure_future(collect(b.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=60)))
    queue = b.WatchQueue(pb.WatchQueueRequest(device="qick"), timeout=60)
    assert (await queue.read()).HasField("snapshot")

    # The listeners may not reconnect until the test says so: what commits meanwhile is never
    # notified to them, only found in the event table.
    gate = asyncio.Event()
    attempts: list[str] = []
    connect = psycopg.AsyncConnection.connect

    async def held_connect(*args, **kwargs):
        if "listener" in kwargs.get("application_name", ""):
            attempts.append(kwargs["application_name"])
            await gate.wait()
        return await connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", held_connect)
    dropped = await asyncio.to_thread(terminate_listeners, url)
    assert dropped == 2  # both replicas' listeners
    await eventually(lambda: len(attempts) == 2, what="both listeners trying to reconnect")

    fake.hold.set()  # the job ends while nobody listens
    await job_in_state(a, job_id, pb.Job.STATE_SUCCEEDED)
    later = (await a.SubmitJob(lab_request())).job.job_id
    await job_in_state(a, later, pb.Job.STATE_SUCCEEDED)

    gate.set()  # back: the catch-up delivers everything, in order
    messages = await watch
    contiguous(messages)
    assert messages[-1].event.state == pb.Job.STATE_SUCCEEDED
    seen: dict[str, int] = {}
    while seen.get(later) != pb.Job.STATE_SUCCEEDED:
        job = (await queue.read()).change.job
        seen[job.job_id] = job.state
    queue.cancel()
    assert seen[job_id] == pb.Job.STATE_SUCCEEDED
    # A later change is heard through notifications again.
    third = (await a.SubmitJob(lab_request(config={"reps": 7}))).job.job_id
    messages = await collect(b.WatchJob(pb.WatchJobRequest(job_id=third), timeout=30))
    contiguous(messages)
    assert messages[-1].event.state == pb.Job.STATE_SUCCEEDED


def terminate_listeners(url: str) -> int:
    """pg_terminate_backend on every replica's listening connection (found by application_name)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'qsched-scheduler % listener'"
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)
