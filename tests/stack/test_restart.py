"""kill -9 the scheduler with jobs queued and running, then restart it."""

from __future__ import annotations

import asyncio
import signal

import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.support import processes
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state, lab_request
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def scheduler_args(port: int, executor_address: str, data_dir) -> list[str]:
    return [
        "serve",
        "scheduler",
        "--scheduler-address",
        f"127.0.0.1:{port}",
        "--lab-device",
        f"qick={executor_address}",
        "--data-dir",
        str(data_dir),
        "--no-config-pinning",
        "--gateway-address",  # nothing listens there: lab jobs never need the gateway
        f"127.0.0.1:{processes.free_port()}",
    ]


async def start_scheduler(args: list[str], log) -> object:
    process = processes.start(args, log)
    address = args[args.index("--scheduler-address") + 1]
    assert await asyncio.to_thread(processes.serving, address), log.read_text()
    return process


async def test_kill_9_keeps_the_queue_and_reattaches(tmp_path, fake_executor):
    fake, executor_address = fake_executor
    fake.hold = asyncio.Event()
    port = processes.free_port()
    address = f"127.0.0.1:{port}"
    args = scheduler_args(port, executor_address, tmp_path / "data")
    log = tmp_path / "scheduler.log"
    process = await start_scheduler(args, log)
    async with authed_channel(address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        running = (await stub.SubmitJob(lab_request(0))).job.job_id
        await job_in_state(stub, running, pb.Job.STATE_RUNNING)
        queued = [(await stub.SubmitJob(lab_request(p))).job.job_id for p in (0, 5, 0, 5)]
        await eventually(lambda: len(fake.board.waiting), until=lambda n: n >= 2, what="runs staged")
    processes.stop(process, signal.SIGKILL)  # with runs staged on the executor

    process = await start_scheduler(args, log)
    try:
        async with authed_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            queue = await stub.ListJobs(pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE))
            expected = [running, queued[1], queued[3], queued[0], queued[2]]
            assert [j.job_id for j in queue.jobs] == expected  # nothing lost, order kept
            later = (await stub.SubmitJob(lab_request(0))).job.job_id
            assert int(later[-5:]) == int(queued[-1][-5:]) + 1  # ids continue
            fake.hold.set()  # the run that was going on is re-attached and completes
            done = await job_in_state(stub, running, pb.Job.STATE_SUCCEEDED)
            assert done.current_run.data.name.startswith(running)
            await job_in_state(stub, later, pb.Job.STATE_SUCCEEDED)
            assert fake.started_jobs == [*expected, later]  # in order, and none ran twice
    finally:
        processes.stop(process)


async def test_run_gone_from_the_executor_is_failed_executor_lost(tmp_path, fake_executor):
    fake, executor_address = fake_executor
    fake.hold = asyncio.Event()
    port = processes.free_port()
    address = f"127.0.0.1:{port}"
    args = scheduler_args(port, executor_address, tmp_path / "data")
    log = tmp_path / "scheduler.log"
    process = await start_scheduler(args, log)
    async with authed_channel(address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        running = (await stub.SubmitJob(lab_request(0))).job.job_id
        await job_in_state(stub, running, pb.Job.STATE_RUNNING)
        waiting = (await stub.SubmitJob(lab_request(0))).job.job_id
        await eventually(lambda: len(fake.board.waiting), until=lambda n: n == 1, what="the second staged")
    processes.stop(process, signal.SIGKILL)
    # The executor restarted meanwhile: the run on the board was lost, the staged one forgotten.
    fake.board.restart()
    fake.hold.set()

    process = await start_scheduler(args, log)
    try:
        async with authed_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            lost = await job_in_state(stub, running, pb.Job.STATE_FAILED)
            assert lost.error.reason == "EXECUTOR_LOST"
            done = await job_in_state(stub, waiting, pb.Job.STATE_SUCCEEDED)  # back in the queue, then run
            assert done.run_count == 1
    finally:
        processes.stop(process)
