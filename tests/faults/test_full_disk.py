"""A full disk is a named condition and the stack recovers by itself when space returns
(issue 18, defect 1): the data directory of a `qsched serve` stack on a small tmpfs, filled up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path

import grpc
import pytest

from qsched.api.executor.v1 import executor_pb2, executor_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.wire import aio_channel, error_info
from tests.faults.test_kill_loop import noop
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.serve_stack import ServeStack
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs as the data dir needs root"),
]


@contextlib.contextmanager
def small_disk(path: Path, size: str = "48m"):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`."""
    filler = disk / "filler"
    filler.touch()  # an empty file fits in a tmpfs that has no byte left
    with filler.open("ab", buffering=0) as out:  # unbuffered: nothing left to flush at close
        chunk = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        with contextlib.suppress(OSError):  # the last partial megabyte
            while True:
                out.write(b"\0" * 4096)
    return filler


async def submit(stub, request) -> pb.Job | grpc.aio.AioRpcError:
    try:
        return (await stub.SubmitJob(request, timeout=10)).job
    except grpc.aio.AioRpcError as error:
        return error


async def executor_gave_up(address: str, service_token: str, job: pb.Job) -> None:
    """Wait for the executor's terminal update of `job`'s run (its own record, not the scheduler's)."""
    async with aio_channel(address, service_token, None) as channel:
        stub = executor_pb2_grpc.HardwareExecutorServiceStub(channel)
        request = executor_pb2.WatchRunRequest(task_id=job.current_run.task_id, after_seq=0)
        async for reply in stub.WatchRun(request, timeout=60):
            if reply.update.WhichOneof("update") in ("result", "error", "cancelled"):
                assert reply.update.WhichOneof("update") == "error", reply.update
                assert reply.update.error.reason == "DISK_FULL", reply.update.error
                return


@pytest.mark.timeout(300)
async def test_a_full_disk_is_named_and_the_stack_recovers(tmp_path, identity):
    with small_disk(tmp_path / "disk") as disk:
        stack = ServeStack(tmp_path, data_dir=disk / "data")
        await asyncio.to_thread(stack.start_all)
        try:
            async with authed_channel(stack.address("scheduler")) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                first = await submit(stub, noop(0))
                await job_in_state(stub, first.job_id, pb.Job.STATE_SUCCEEDED, timeout=30)

                # A run on the board while the disk fills: its data file cannot be written.
                running = await submit(stub, noop(1.0))
                running = await job_in_state(stub, running.job_id, pb.Job.STATE_RUNNING, timeout=30)
                filler = await asyncio.to_thread(fill, disk)
                refused = await eventually(
                    lambda: submit(stub, noop(0)),
                    until=lambda r: isinstance(r, grpc.aio.AioRpcError),
                    timeout=60,
                    what="a submit refused on the full disk",
                )
                assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details()
                assert error_info(refused).reason == "STORAGE_FULL"

                # The executor has given up on the run's data file before space returns.
                await executor_gave_up(stack.address("executor"), identity.service_token, running)
                filler.unlink()  # space returns; nothing is restarted
                recovered = await eventually(
                    lambda: submit(stub, noop(0)),
                    until=lambda r: isinstance(r, pb.Job),
                    timeout=60,
                    what="a submit accepted once space is back",
                )
                await job_in_state(stub, recovered.job_id, pb.Job.STATE_SUCCEEDED, timeout=60)
                ended = await job_in_state(stub, running.job_id, pb.Job.STATE_FAILED, timeout=60)
                assert ended.error.reason == "DISK_FULL", ended.error
                # Every job acknowledged while the disk filled up ended, none stuck RUNNING.
                listed = await stub.ListJobs(pb.ListJobsRequest(page_size=1000))
                stuck = [j.job_id for j in listed.jobs if j.state == pb.Job.STATE_RUNNING]
                assert not stuck or await eventually(
                    lambda: stub.ListJobs(pb.ListJobsRequest(page_size=1000)),
                    until=lambda r: all(j.state != pb.Job.STATE_RUNNING for j in r.jobs),
                    timeout=60,
                    what="no job left RUNNING",
                )
                failed = [j for j in listed.jobs if j.state == pb.Job.STATE_FAILED]
                assert all(j.error.reason == "DISK_FULL" for j in failed), [j.error for j in failed]
        finally:
            stack.stop_all()
