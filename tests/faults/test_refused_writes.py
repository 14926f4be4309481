"""A database that refuses writes for a while (issue 18, the suite): another connection holds
the scheduler's SQLite database locked for writing, as a stuck migration or backup tool would.
While it does, a submit answers a named, retryable error (UNAVAILABLE, STORAGE_UNAVAILABLE),
never UNKNOWN, and the scheduler's health is NOT_SERVING while its dispatcher cannot record
what the executor reports; nothing acknowledged is lost; once the lock is gone the stack
recovers by itself (SERVING again) and runs the whole queue."""

from __future__ import annotations

import asyncio
import sqlite3

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.wire import error_info
from tests.faults.test_kill_loop import TERMINAL, noop
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.serve_stack import ServeStack
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def health(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)).status


async def submit(stub, request) -> pb.Job | grpc.aio.AioRpcError:
    """A write waits up to the busy timeout (10 s) for a locked database before it is refused
    (1 s once one was refused), after the writes queued before it on the one store thread."""
    try:
        return (await stub.SubmitJob(request, timeout=90)).job
    except grpc.aio.AioRpcError as error:
        return error


@pytest.mark.timeout(300)
async def test_submits_are_refused_by_name_while_the_database_refuses_writes_then_all_run(tmp_path):
    stack = ServeStack(tmp_path)
    await asyncio.to_thread(stack.start_all)
    try:
        async with authed_channel(stack.address("scheduler")) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            first = await submit(stub, noop(0))
            await job_in_state(stub, first.job_id, pb.Job.STATE_SUCCEEDED, timeout=30)
            acked = [first.job_id]
            # Jobs queued behind a long one, so some wait while the database refuses writes.
            running = await submit(stub, noop(3.0))
            acked.append(running.job_id)
            for _ in range(3):
                acked.append((await submit(stub, noop(0))).job_id)

            holder = sqlite3.connect(stack.data_dir / "scheduler.db", isolation_level=None, timeout=30)
            holder.execute("BEGIN EXCLUSIVE")  # every other writer waits, then is refused
            try:
                began = asyncio.get_running_loop().time()
                refused = await submit(stub, noop(0))
                print(f"\nrefused after {asyncio.get_running_loop().time() - began:.1f} s")
                assert isinstance(refused, grpc.aio.AioRpcError), refused
                assert refused.code() == grpc.StatusCode.UNAVAILABLE, (refused.code(), refused.details())
                assert error_info(refused).reason == "STORAGE_UNAVAILABLE", refused.details()
                # The dispatcher cannot record the long run's end: the health says so.
                await eventually(
                    lambda: health(channel),
                    until=lambda s: s == health_pb2.HealthCheckResponse.NOT_SERVING,
                    timeout=90,
                    what="NOT_SERVING while the dispatcher cannot write",
                )
            finally:
                holder.execute("ROLLBACK")
                holder.close()

            # Writes are allowed again: nothing is restarted, and the queue runs.
            late = await eventually(
                lambda: submit(stub, noop(0)),
                until=lambda r: isinstance(r, pb.Job),
                timeout=60,
                what="a submit accepted once writes are allowed",
            )
            acked.append(late.job_id)
            await eventually(
                lambda: health(channel),
                until=lambda s: s == health_pb2.HealthCheckResponse.SERVING,
                timeout=60,
                what="SERVING again",
            )

            async def states() -> list[pb.Job]:
                return [(await stub.GetJob(pb.GetJobRequest(job_id=i), timeout=10)).job for i in acked]

            jobs = await eventually(
                states, until=lambda js: all(j.state in TERMINAL for j in js), timeout=120, what="all ended"
            )
            assert [pb.Job.State.Name(j.state) for j in jobs] == ["STATE_SUCCEEDED"] * len(acked), [
                (j.job_id, pb.Job.State.Name(j.state), j.error.reason, j.error.message) for j in jobs
            ]
            assert all(j.run_count == 1 for j in jobs)
    finally:
        stack.stop_all()
