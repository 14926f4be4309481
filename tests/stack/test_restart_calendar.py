"""kill -9 the scheduler with a reservation window and a session open, then restart it: both are
still there and still hold the queue."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.wire import timestamp
from tests.stack.test_restart import scheduler_args, start_scheduler
from tests.support import processes
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state, lab_request
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def held_by(stub, job_id: str, policy: str) -> pb.Job:
    response = await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)),
        until=lambda r: r.job.waiting_reason.policy == policy,
        what=f"{job_id} held by {policy}",
    )
    return response.job


async def test_kill_9_keeps_windows_and_sessions(tmp_path, fake_executor):
    fake, executor_address = fake_executor
    port = processes.free_port()
    address = f"127.0.0.1:{port}"
    args = scheduler_args(port, executor_address, tmp_path / "data")
    log = tmp_path / "scheduler.log"
    process = await start_scheduler(args, log)
    now = datetime.now(UTC)
    async with authed_channel(address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        window = await stub.CreateReservation(
            pb.CreateReservationRequest(
                device="qick",
                kind=pb.Reservation.KIND_MAINTENANCE,
                start_time=timestamp(now),
                end_time=timestamp(now + timedelta(hours=1)),
            )
        )
        opening = pb.OpenSessionRequest(device="qick")
        opening.max_length.FromTimedelta(timedelta(hours=1))
        opening.idle_timeout.FromTimedelta(timedelta(hours=1))
        session = await stub.OpenSession(opening)
    processes.stop(process, signal.SIGKILL)

    process = await start_scheduler(args, log)
    try:
        async with authed_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            reservations = (await stub.ListReservations(pb.ListReservationsRequest())).reservations
            assert [r.reservation_id for r in reservations] == [window.reservation.reservation_id]
            sessions = (await stub.ListSessions(pb.ListSessionsRequest())).sessions
            assert [s.session_id for s in sessions] == [session.session.session_id]
            job_id = (await stub.SubmitJob(lab_request())).job.job_id
            await held_by(stub, job_id, "reservations")
            await stub.CancelReservation(
                pb.CancelReservationRequest(reservation_id=window.reservation.reservation_id)
            )
            await held_by(stub, job_id, "sessions")
            await stub.CancelSession(pb.CancelSessionRequest(session_id=session.session.session_id))
            await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
            assert fake.started_jobs == [job_id]
    finally:
        processes.stop(process)
