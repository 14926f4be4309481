"""Reservations over gRPC on a real scheduler (SQLite, and PostgreSQL for the restart): book,
list, cancel, overlaps refused naming the other window, roles, a job held by a window and a job
targeting one, windows kept across a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import duration_pb2

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.wire import error_info, timestamp
from tests.support.identity import authed_channel
from tests.support.jobs import expect_error, job_in_state, lab_request
from tests.support.stack import running_service
from tests.support.waiting import eventually

EXCLUSIVE, MAINTENANCE = pb.Reservation.KIND_EXCLUSIVE, pb.Reservation.KIND_MAINTENANCE


def book(kind: int, start: datetime, length: timedelta, *holders: str, **kw) -> pb.CreateReservationRequest:
    return pb.CreateReservationRequest(
        device=kw.pop("device", "qick"),
        kind=kind,
        start_time=timestamp(start),
        end_time=timestamp(start + length),
        holders=list(holders),
        **kw,
    )


def now() -> datetime:
    return datetime.now(UTC)


async def waiting_on_calendar(stub, job_id: str) -> pb.Job:
    response = await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)),
        until=lambda r: r.job.waiting_reason.policy == "reservations",
        what=f"{job_id} held by the calendar",
    )
    assert response.job.state == pb.Job.STATE_QUEUED
    return response.job


async def test_book_list_cancel_and_an_overlap_is_refused_naming_the_other(scheduler):
    stub, _, _ = scheduler
    start = now() + timedelta(hours=2)
    first = (await stub.CreateReservation(book(EXCLUSIVE, start, timedelta(hours=1)))).reservation
    assert first.reservation_id.startswith("RES-") and list(first.holders) == ["alice"]
    assert first.created_by == "alice"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateReservation(book(MAINTENANCE, start + timedelta(minutes=30), timedelta(hours=1)))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    detail = error_info(refused.value)
    assert (
        detail.reason == "RESERVATION_OVERLAP" and detail.metadata["reservation_id"] == first.reservation_id
    )
    assert first.reservation_id in refused.value.details()
    later = await stub.CreateReservation(book(MAINTENANCE, start + timedelta(hours=1), timedelta(hours=1)))
    listed = (await stub.ListReservations(pb.ListReservationsRequest(device="qick"))).reservations
    assert [r.reservation_id for r in listed] == [first.reservation_id, later.reservation.reservation_id]
    gone = await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=first.reservation_id))
    assert gone.reservation.cancelled and gone.reservation.cancelled_by == "alice"
    listed = (await stub.ListReservations(pb.ListReservationsRequest())).reservations
    assert [r.reservation_id for r in listed] == [later.reservation.reservation_id]
    await expect_error(
        stub.CreateReservation(book(EXCLUSIVE, start, timedelta(hours=1), device="nowhere")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "UNKNOWN_DEVICE",
    )


async def test_a_user_books_only_exclusive_windows_for_themselves_and_cancels_only_their_own(
    scheduler, identity
):
    stub, _, address = scheduler
    start = now() + timedelta(hours=5)
    operators = (
        await stub.CreateReservation(book(EXCLUSIVE, start, timedelta(hours=1), "carol"))
    ).reservation
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = pb_grpc.JobServiceStub(channel)
        await expect_error(
            bob.CreateReservation(book(MAINTENANCE, start + timedelta(hours=2), timedelta(hours=1))),
            grpc.StatusCode.PERMISSION_DENIED,
            "OPERATOR_REQUIRED",
        )
        await expect_error(
            bob.CreateReservation(book(EXCLUSIVE, start + timedelta(hours=2), timedelta(hours=1), "carol")),
            grpc.StatusCode.PERMISSION_DENIED,
            "OPERATOR_REQUIRED",
        )
        await expect_error(
            bob.CreateReservation(book(EXCLUSIVE, start + timedelta(hours=2), timedelta(hours=9))),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RESERVATION_TOO_LONG",
        )
        own = await bob.CreateReservation(book(EXCLUSIVE, start + timedelta(hours=2), timedelta(hours=1)))
        assert list(own.reservation.holders) == ["bob"]
        await expect_error(
            bob.CancelReservation(pb.CancelReservationRequest(reservation_id=operators.reservation_id)),
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_YOUR_RESERVATION",
        )
        await bob.CancelReservation(
            pb.CancelReservationRequest(reservation_id=own.reservation.reservation_id)
        )


async def test_others_wait_inside_an_exclusive_window_and_a_targeted_job_waits_for_its_window(
    scheduler, identity
):
    stub, fake, address = scheduler
    # alice's window is open now; one of hers opens in a moment and her job targets it.
    open_now = (await stub.CreateReservation(book(EXCLUSIVE, now(), timedelta(seconds=1.5)))).reservation
    soon = (
        await stub.CreateReservation(book(EXCLUSIVE, now() + timedelta(seconds=1.5), timedelta(minutes=10)))
    ).reservation
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = pb_grpc.JobServiceStub(channel)
        bobs = (await bob.SubmitJob(lab_request(owner="bob"))).job.job_id
    held = await waiting_on_calendar(stub, bobs)
    assert open_now.reservation_id in held.waiting_reason.summary
    targeted = (await stub.SubmitJob(lab_request(labels={"reservation": soon.reservation_id}))).job.job_id
    # It waits for its window, then runs inside it (the ticker opens it, no call needed).
    ran = await job_in_state(stub, targeted, pb.Job.STATE_SUCCEEDED)
    assert soon.reservation_id in ran.current_run.reason.summary
    assert (await stub.GetJob(pb.GetJobRequest(job_id=bobs))).job.state == pb.Job.STATE_QUEUED
    await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=soon.reservation_id))
    await job_in_state(stub, bobs, pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [targeted, bobs]


async def test_booking_and_opening_a_session_while_runs_are_staged_take_them_back(scheduler):
    """A booking (and a session) is written off the event loop; with a run staged behind the
    running one, telling the dispatcher failed the call with "no running event loop"."""
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()  # runs do not finish until it is set
    first = (await stub.SubmitJob(lab_request())).job.job_id
    second = (await stub.SubmitJob(lab_request())).job.job_id
    await eventually(lambda: fake.execute_calls, until=lambda n: n >= 2, what="a run staged behind the first")
    await stub.CreateReservation(book(EXCLUSIVE, now() + timedelta(hours=1), timedelta(hours=1)))
    await eventually(
        lambda: fake.execute_calls, until=lambda n: n >= 3, what="the staged run taken back, again"
    )
    hour = duration_pb2.Duration(seconds=3600)
    opened = (
        await stub.OpenSession(pb.OpenSessionRequest(device="qick", max_length=hour, idle_timeout=hour))
    ).session
    await stub.CancelSession(pb.CancelSessionRequest(session_id=opened.session_id))
    fake.hold.set()
    for job_id in (first, second):
        await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return ""  # the data directory's SQLite file
    return request.getfixturevalue("postgres_databases")()


async def test_windows_survive_a_scheduler_restart(tmp_path, fake_executor, database_url):
    _, executor_address = fake_executor
    config = {"lab_devices": {"qick": executor_address}, "pin_configs": False, "database_url": database_url}
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        stub = pb_grpc.JobServiceStub(channel)
        window = (
            await stub.CreateReservation(book(MAINTENANCE, now(), timedelta(hours=1), note="fridge warm-up"))
        ).reservation
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        stub = pb_grpc.JobServiceStub(channel)
        listed = (await stub.ListReservations(pb.ListReservationsRequest())).reservations
        assert [(r.reservation_id, r.note) for r in listed] == [(window.reservation_id, "fridge warm-up")]
        job_id = (await stub.SubmitJob(lab_request())).job.job_id
        held = await waiting_on_calendar(stub, job_id)
        assert window.reservation_id in held.waiting_reason.summary
        await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=window.reservation_id))
        await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)


async def test_the_cli_books_lists_explains_and_cancels(scheduler, capsys):
    from qsched.cli.main import main

    stub, _, address = scheduler

    async def qsched(*args: str) -> str:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*args, "--address", address])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    out = await qsched("reserve", "qick", "--kind", "maintenance", "--for", "2h", "--note", "warm-up")
    reservation_id = out.split()[0]
    assert reservation_id.startswith("RES-") and "maintenance" in out
    assert reservation_id in await qsched("calendar", "qick")
    job_id = (await stub.SubmitJob(lab_request())).job.job_id
    await waiting_on_calendar(stub, job_id)
    why = await qsched("why", job_id)
    assert "[reservations]" in why and reservation_id in why
    assert f"Cancelled {reservation_id}" in await qsched("unreserve", reservation_id)
    await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    why = await qsched("why", job_id)
    assert "run 1" in why and "[priority-fifo]" in why
    assert "No reservations." in await qsched("reservations")
    usage = await stub.ListUsage(pb.ListUsageRequest(device="qick"))
    assert [(u.device, u.owner) for u in usage.usage] == [("qick", "alice")]
    assert usage.half_life.ToTimedelta() == timedelta(days=7) and not usage.fair_share_devices
    out = await qsched("usage")
    assert "alice" in out and "fair share on: none" in out


async def test_the_device_view_says_which_window_or_session_decides_what_starts(scheduler, capsys):
    from qsched.cli.main import main

    stub, _, address = scheduler

    async def device() -> pb.Device:
        return (await stub.GetDevice(pb.GetDeviceRequest(name="qick"))).device

    assert not (await device()).HasField("current_reservation")
    window = (await stub.CreateReservation(book(EXCLUSIVE, now(), timedelta(minutes=10), "dave"))).reservation
    later = (
        await stub.CreateReservation(book(MAINTENANCE, now() + timedelta(hours=1), timedelta(hours=1)))
    ).reservation
    shown = await device()
    assert shown.current_reservation.reservation_id == window.reservation_id
    assert list(shown.current_reservation.holders) == ["dave"]
    assert shown.current_reservation.end_time == window.end_time
    assert shown.next_reservation.reservation_id == later.reservation_id
    assert not shown.HasField("current_session")
    [listed] = [d for d in (await stub.ListDevices(pb.ListDevicesRequest())).devices if d.name == "qick"]
    assert listed.current_reservation == shown.current_reservation
    job_id = (await stub.SubmitJob(lab_request())).job.job_id
    await waiting_on_calendar(stub, job_id)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["queue", "--address", address]) == 0
    out = capsys.readouterr().out
    assert f"qick is reserved: exclusive window {window.reservation_id} for dave until " in out
    assert "only their jobs start" in out
    await stub.CancelReservation(pb.CancelReservationRequest(reservation_id=window.reservation_id))
    await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    session = (await stub.OpenSession(open_request())).session
    shown = await device()
    assert not shown.HasField("current_reservation")
    assert shown.current_session.session_id == session.session_id and shown.current_session.owner == "alice"
    await stub.CancelSession(pb.CancelSessionRequest(session_id=session.session_id))
    assert not (await device()).HasField("current_session")


# -- sessions ------------------------------------------------------------------------------------------------
def open_request(minutes: float = 10, idle_s: float = 60) -> pb.OpenSessionRequest:
    request = pb.OpenSessionRequest(device="qick")
    request.max_length.FromTimedelta(timedelta(minutes=minutes))
    request.idle_timeout.FromTimedelta(timedelta(seconds=idle_s))
    return request


async def waiting_on_session(stub, job_id: str) -> pb.Job:
    response = await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)),
        until=lambda r: r.job.waiting_reason.policy == "sessions",
        what=f"{job_id} held by a session",
    )
    assert response.job.state == pb.Job.STATE_QUEUED
    return response.job


async def test_a_session_runs_its_jobs_while_others_wait_and_close_ends_it(scheduler, identity):
    stub, fake, address = scheduler
    session = (await stub.OpenSession(open_request())).session
    assert session.owner == "alice" and session.state == pb.DeviceSession.STATE_OPEN
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = pb_grpc.JobServiceStub(channel)
        bobs = (await bob.SubmitJob(lab_request(owner="bob"))).job.job_id
        await expect_error(
            bob.CloseSession(pb.CloseSessionRequest(session_id=session.session_id)),
            grpc.StatusCode.PERMISSION_DENIED,
            "NOT_YOUR_SESSION",
        )
    await waiting_on_session(stub, bobs)
    mine = [
        (await stub.SubmitJob(lab_request(labels={"session": session.session_id}))).job.job_id
        for _ in range(2)
    ]
    for job_id in mine:
        ran = await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
        assert session.session_id in ran.current_run.reason.summary
    await waiting_on_session(stub, bobs)  # the device waits for alice's next job (idle < 60 s)
    closed = (await stub.CloseSession(pb.CloseSessionRequest(session_id=session.session_id))).session
    assert closed.state == pb.DeviceSession.STATE_ENDED and closed.end_reason == "closed"
    await job_in_state(stub, bobs, pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [*mine, bobs]
    assert not (await stub.ListSessions(pb.ListSessionsRequest())).sessions


async def test_the_sdk_session_context_manager(scheduler):
    from qsched.client import JobClient

    stub, _, address = scheduler

    def in_a_session() -> tuple[str, list[dict]]:
        with JobClient(address) as client:
            with client.session("qick", max_length=600, idle_timeout=60) as session:
                job_id = session.submit_job("AmplitudeRabiExperiment", "exp.rabi", {"reps": 10})
                client.wait_for_completion(job_id, timeout=30, verbose=False)
                assert [s["session_id"] for s in client.sessions()] == [session.session_id]
            return job_id, client.sessions()

    job_id, after = await asyncio.to_thread(in_a_session)
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    assert job.labels["session"] and "in session" in job.current_run.reason.summary
    assert after == []


async def test_an_open_session_survives_a_scheduler_restart(tmp_path, fake_executor, database_url):
    _, executor_address = fake_executor
    config = {"lab_devices": {"qick": executor_address}, "pin_configs": False, "database_url": database_url}
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        session = (await pb_grpc.JobServiceStub(channel).OpenSession(open_request(idle_s=600))).session
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        stub = pb_grpc.JobServiceStub(channel)
        listed = (await stub.ListSessions(pb.ListSessionsRequest())).sessions
        assert [s.session_id for s in listed] == [session.session_id]
        other = (await stub.SubmitJob(lab_request(owner="alice"))).job.job_id  # not in the session
        await waiting_on_session(stub, other)
        await stub.CancelSession(pb.CancelSessionRequest(session_id=session.session_id))
        await job_in_state(stub, other, pb.Job.STATE_SUCCEEDED)


async def test_with_fair_share_a_later_users_job_starts_within_the_next_two_starts(
    tmp_path, fake_executor, identity
):
    fake, executor_address = fake_executor
    fake.hold = asyncio.Event()  # alice's first job keeps the board until released
    config = {"lab_devices": {"qick": executor_address}, "pin_configs": False, "fair_share_devices": "qick"}
    async with (
        running_service("scheduler", tmp_path, **config) as address,
        authed_channel(address) as channel,
    ):
        stub = pb_grpc.JobServiceStub(channel)
        alice = [(await stub.SubmitJob(lab_request())).job.job_id for _ in range(20)]
        await job_in_state(stub, alice[0], pb.Job.STATE_RUNNING)
        async with authed_channel(address, identity.token_for("bob")) as bob_channel:
            bob = (await pb_grpc.JobServiceStub(bob_channel).SubmitJob(lab_request(owner="bob"))).job.job_id
        fake.hold.set()
        ran = await job_in_state(stub, bob, pb.Job.STATE_SUCCEEDED)
        assert bob in fake.started_jobs[1:3], fake.started_jobs[:4]
        assert ran.current_run.reason.policy == "fair-share"
        await job_in_state(stub, alice[-1], pb.Job.STATE_SUCCEEDED)
        usage = {u.owner: u.usage_seconds for u in (await stub.ListUsage(pb.ListUsageRequest())).usage}
        assert set(usage) == {"alice", "bob"}
        assert list((await stub.ListUsage(pb.ListUsageRequest())).fair_share_devices) == ["qick"]
