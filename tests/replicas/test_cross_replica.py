"""Commands on a replica that does not dispatch the device reach the one that does, through the
database (issue 15): submits start, cancels of queued, staged and running jobs take effect, and
a device paused or resumed on one replica is held or opened on the holder."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.support.identity import authed_channel
from tests.support.replica_stack import ReplicaStack, lease_holders
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
DEVICE = "qick1"


def sleeper(seconds: float) -> pb.SubmitJobRequest:
    experiment = pb.LabExperiment(
        experiment_class="NoOpExperiment",
        experiment_module="qsched_hardware.experiments",
        expt_config_json=json.dumps({"sleep_s": seconds}),
    )
    return pb.SubmitJobRequest(
        device=DEVICE, request_id=str(uuid.uuid4()), payload=pb.JobPayload(lab_experiment=experiment)
    )


@pytest.mark.timeout(300)
async def test_submits_cancels_and_holds_on_another_replica_reach_the_holder(tmp_path, postgres_databases):
    url = postgres_databases()
    stack = ReplicaStack(tmp_path, url, replicas=2, boards=1)
    await asyncio.to_thread(stack.start_all)
    try:
        held = await eventually(lambda: asyncio.to_thread(lease_holders, url), until=lambda h: DEVICE in h)
        holder = stack.by_pid(held[DEVICE][0])
        other = next(name for name in stack.schedulers if name != holder)
        async with authed_channel(stack.address(other)) as ch, authed_channel(stack.address(holder)) as hch:
            stub, at_holder = jobs_pb2_grpc.JobServiceStub(ch), jobs_pb2_grpc.JobServiceStub(hch)

            async def state_of(job_id: str, wanted: int, what: str) -> pb.Job:
                reply = await eventually(
                    lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10),
                    until=lambda r: r.job.state == wanted,
                    timeout=30,
                    what=what,
                )
                return reply.job

            async def submit(seconds: float) -> str:
                return (await stub.SubmitJob(sleeper(seconds), timeout=10)).job.job_id

            running = await submit(60)  # submitted on the replica that does not dispatch the device
            await state_of(running, pb.Job.STATE_RUNNING, "a job submitted on the other replica running")
            staged, queued = await submit(60), await submit(60)
            await eventually(
                lambda: stub.GetJob(pb.GetJobRequest(job_id=staged), timeout=10),
                until=lambda r: r.job.current_run.staged,
                what="the next job staged by the holder",
            )
            for job_id in (queued, staged, running):  # each cancelled on the other replica
                await stub.CancelJob(pb.CancelJobRequest(job_id=job_id, reason="changed my mind"), timeout=10)
            for job_id, what in ((queued, "queued"), (staged, "staged"), (running, "running")):
                job = await state_of(job_id, pb.Job.STATE_CANCELLED, f"the {what} job cancelled")
                assert job.run_count <= 1
            # The running job really stopped: the board is free for the next one at once.
            quick = await submit(0)
            await state_of(quick, pb.Job.STATE_SUCCEEDED, "the next job running after the cancels")

            # Paused on the other replica: the holder starts nothing until it is resumed there.
            await stub.PauseDevice(pb.PauseDeviceRequest(name=DEVICE, reason="maintenance"), timeout=10)
            await eventually(
                lambda: at_holder.GetDevice(pb.GetDeviceRequest(name=DEVICE), timeout=10),
                until=lambda r: r.device.queue_state == pb.DEVICE_QUEUE_STATE_PAUSED,
                what="the holder seeing the pause",
            )
            waiting = await submit(0)
            reply = await eventually(
                lambda: at_holder.GetJob(pb.GetJobRequest(job_id=waiting), timeout=10),
                until=lambda r: r.job.waiting_reason.summary,
                what="the holder's reason the job waits",
            )
            assert reply.job.state == pb.Job.STATE_QUEUED, reply.job
            await stub.ResumeDevice(pb.ResumeDeviceRequest(name=DEVICE), timeout=10)
            job = await state_of(waiting, pb.Job.STATE_SUCCEEDED, "the job running after the resume")
            assert job.run_count == 1
    finally:
        stack.stop_all()


@pytest.mark.timeout(300)
async def test_a_paused_holder_that_wakes_up_after_a_takeover_writes_nothing(tmp_path, postgres_databases):
    """SIGSTOP the replica holding the device mid-queue (a long GC pause, a VM frozen): another
    replica takes the device over; SIGCONT: the old holder finds its lease gone and stops on its
    own (its fence fails first), and every job still runs exactly once."""
    url = postgres_databases()
    stack = ReplicaStack(tmp_path, url, replicas=2, boards=1)
    await asyncio.to_thread(stack.start_all)
    try:
        held = await eventually(lambda: asyncio.to_thread(lease_holders, url), until=lambda h: DEVICE in h)
        holder = stack.by_pid(held[DEVICE][0])
        other = next(name for name in stack.schedulers if name != holder)
        async with authed_channel(stack.address(other)) as ch:
            stub = jobs_pb2_grpc.JobServiceStub(ch)
            ids = [(await stub.SubmitJob(sleeper(0.05), timeout=10)).job.job_id for _ in range(40)]
            await eventually(
                lambda: stub.GetJob(pb.GetJobRequest(job_id=ids[5]), timeout=10),
                until=lambda r: r.job.state == pb.Job.STATE_SUCCEEDED,
                what="the queue moving",
            )
            stack.running[holder].send_signal(signal.SIGSTOP)
            try:
                await eventually(
                    lambda: asyncio.to_thread(lease_holders, url),
                    until=lambda h: h[DEVICE][1] > held[DEVICE][1],
                    timeout=10,
                    what="the other replica taking the device over",
                )
                ids += [(await stub.SubmitJob(sleeper(0.05), timeout=10)).job.job_id for _ in range(10)]
            finally:
                stack.running[holder].send_signal(signal.SIGCONT)

            async def every_job() -> list[pb.Job]:
                return [(await stub.GetJob(pb.GetJobRequest(job_id=i), timeout=10)).job for i in ids]

            jobs = await eventually(
                every_job,
                until=lambda js: all(j.state == pb.Job.STATE_SUCCEEDED for j in js),
                timeout=120,
                what="every job succeeding",
            )
        assert all(j.run_count == 1 for j in jobs), "a job ran twice"
        await eventually(
            lambda: "lost the lease of qick1" in stack.log(holder).read_text(),
            what="the woken holder noticing it lost the device",
        )
    finally:
        stack.stop_all()
    files = [p.name[:18] for p in stack.data_dir("executor1").rglob("*.h5")]
    assert sorted(files) == sorted(ids), "a job without or with two data files"
