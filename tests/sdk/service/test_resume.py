"""Following a job survives a dropped connection: the follower reconnects and resumes from the
last event seq it saw; no event is lost or repeated (the proxy cuts the network, the job moves on
while the client is disconnected, the network comes back)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from qsched import JobClient, connection
from qsched.aio import Client, JobState
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.errors import Unavailable
from qsched.follow import follow_async
from qsched.progress import Progress
from tests.sdk.helpers import RABI, in_thread
from tests.sdk.proxy import Proxy
from tests.support.jobs import job_in_state
from tests.support.processes import free_port
from tests.support.waiting import eventually


@pytest.fixture
async def proxy(scheduler):
    p = await Proxy(scheduler[2]).start()
    yield p
    await p.stop()


async def submit(stub, **config) -> str:
    request = pb.SubmitJobRequest(
        device="qick",
        owner="alice",
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class="C", experiment_module=RABI, expt_config_json=json.dumps(config)
            )
        ),
    )
    return (await stub.SubmitJob(request)).job.job_id


async def test_stream_resumes_from_the_last_seq_without_losing_events(scheduler, proxy):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job_id = await submit(stub)
    channel = connection.aio_channel(proxy.address)
    try:
        updates = []
        saw_all_progress = asyncio.Event()

        async def consume():
            async for update in follow_async(
                pb_grpc.JobServiceStub(channel), channel, job_id, 0, 30, proxy.address
            ):
                updates.append(update)
                if update.event is not None and update.event.progress == 1.0:
                    saw_all_progress.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(saw_all_progress.wait(), 10)
        seen_before_cut = updates[-1].seq
        await proxy.cut()
        fake.hold.set()  # the job finishes while the client is cut off
        final = await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
        await proxy.resume()
        await asyncio.wait_for(task, 30)
    finally:
        await channel.close()
    snapshots = [u for u in updates if u.event is None]
    events = [u.event for u in updates if u.event is not None]
    assert snapshots[0].resumed is False and any(s.resumed for s in snapshots[1:])  # it reconnected
    seqs = [e.seq for e in events]
    assert seqs == list(range(snapshots[0].job.last_seq + 1, final.last_seq + 1))  # contiguous, no repeat
    assert max(seqs) > seen_before_cut  # events that happened during the cut were replayed
    assert events[-1].state == pb.Job.STATE_SUCCEEDED
    assert proxy.connections >= 2


async def test_job_handle_survives_a_cut(scheduler, proxy):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    async with Client(proxy.address, default_device="qick") as client:
        job = client.create_job(experiment=f"{RABI}.C", config={})
        await job.submit()
        await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
        follower = asyncio.create_task(job.execute(timeout_s=30))
        await eventually(lambda: job.state is JobState.RUNNING, what="the follower seeing it running")
        await proxy.cut()
        fake.hold.set()
        await job_in_state(stub, job.job_id, pb.Job.STATE_SUCCEEDED)
        await proxy.resume()
        outputs = await asyncio.wait_for(follower, 30)
    assert job.completed and len(outputs) == 1 and fake.execute_calls == 1


def following(monkeypatch) -> threading.Event:
    """Set once JobClient.wait_for_completion has the job's snapshot from the stream."""
    started = threading.Event()
    original = Progress.update

    def update(self, *args, **kwargs):
        started.set()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Progress, "update", update)
    return started


async def test_sync_wait_survives_a_cut(scheduler, proxy, monkeypatch):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job_id = await submit(stub)
    await job_in_state(stub, job_id, pb.Job.STATE_RUNNING)
    client = JobClient(proxy.address)
    started = following(monkeypatch)
    waiting = asyncio.ensure_future(in_thread(client.wait_for_completion, job_id, verbose=False))
    assert await asyncio.to_thread(started.wait, 10)
    await proxy.cut()
    fake.hold.set()
    await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    await proxy.resume()
    result = await asyncio.wait_for(waiting, 30)
    assert result.status == "completed" and proxy.connections >= 2


async def test_gives_up_with_unavailable_when_the_scheduler_stays_away(scheduler, proxy, monkeypatch):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job_id = await submit(stub)
    await job_in_state(stub, job_id, pb.Job.STATE_RUNNING)
    client = JobClient(proxy.address, reconnect_timeout=0.5)
    started = following(monkeypatch)
    waiting = asyncio.ensure_future(asyncio.to_thread(client.wait_for_completion, job_id, verbose=False))
    assert await asyncio.to_thread(started.wait, 10)
    await proxy.cut()
    with pytest.raises(Unavailable, match=r"could not reconnect within 0\.5 s"):
        await asyncio.wait_for(waiting, 30)
    fake.hold.set()


async def test_an_unreachable_scheduler_fails_at_once():
    client = JobClient(f"127.0.0.1:{free_port()}", reconnect_timeout=60)
    with pytest.raises(Unavailable):
        await in_thread(client.wait_for_completion, "JOB-20260101-00001", verbose=False)
