"""qsched.jobs.v1.JobService end to end: real gRPC, SQLite store, test-double executor."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched_core.execution import EnqueueRuns, ExecutionRequest
from qsched_core.payloads import LabExperiment
from qsched_scheduler.domain import MAX_PAYLOAD_BYTES
from tests.support.identity import authed_channel
from tests.support.jobs import expect_error, job_in_state, lab_request
from tests.support.waiting import eventually

JOB_ID = re.compile(r"^JOB-\d{8}-\d{5}$")


async def test_submit_is_queued_dispatched_and_watchable(scheduler):
    stub, fake, _ = scheduler
    response = await stub.SubmitJob(lab_request())
    job = response.job
    assert JOB_ID.match(job.job_id)
    assert response.queue_position == 1 and response.HasField("estimated_start_time")
    messages = [m async for m in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id))]
    assert messages[0].HasField("snapshot")
    events = [m.event for m in messages[1:]]
    assert [e.seq for e in events] == list(range(messages[0].snapshot.last_seq + 1, events[-1].seq + 1))
    assert events[-1].state == pb.Job.STATE_SUCCEEDED
    run = events[-1].job.current_run
    assert run.data.name == run.data_file_path and run.data.name.startswith(f"{job.job_id}-")
    assert run.reason.policy == "priority-fifo" and not run.staged
    assert events[-1].job.current_run.summary["pi_gain"] == 0.5
    assert fake.started_jobs == [job.job_id]
    # Resume: everything after seq 1 is replayed, nothing is missed.
    resumed = [m async for m in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id, after_seq=1))]
    assert [m.event.seq for m in resumed[1:]] == list(range(2, events[-1].seq + 1))
    # After the last event of a finished job (or beyond it): the snapshot, then the stream ends.
    for after in (events[-1].seq, events[-1].seq + 100):
        request = pb.WatchJobRequest(job_id=job.job_id, after_seq=after)
        tail = [m async for m in stub.WatchJob(request, timeout=10)]
        assert len(tail) == 1 and tail[0].HasField("snapshot")


async def test_priority_order_then_fifo(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()  # the first job keeps the board until released
    first = (await stub.SubmitJob(lab_request(0))).job.job_id
    await job_in_state(stub, first, pb.Job.STATE_RUNNING)
    low1 = (await stub.SubmitJob(lab_request(0))).job.job_id
    high = (await stub.SubmitJob(lab_request(50))).job.job_id
    low2 = (await stub.SubmitJob(lab_request(0))).job.job_id
    mid = (await stub.SubmitJob(lab_request(10))).job.job_id
    queue = await stub.ListJobs(pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE, device="qick"))
    assert [j.job_id for j in queue.jobs] == [first, high, mid, low1, low2]
    assert [j.queue_position for j in queue.jobs] == [0, 1, 2, 3, 4]
    fake.hold.set()
    await job_in_state(stub, low2, pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [first, high, mid, low1, low2]


async def test_request_id_retry_creates_nothing(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    one = await stub.SubmitJob(lab_request(request_id="3b1c1f6e-8a51-4d0e-9a57-0f8f5b8a0c01"))
    two = await stub.SubmitJob(lab_request(request_id="3b1c1f6e-8a51-4d0e-9a57-0f8f5b8a0c01"))
    assert one.job.job_id == two.job.job_id and two.deduplicated and not one.deduplicated
    history = await stub.ListJobs(pb.ListJobsRequest())
    assert len(history.jobs) == 1
    fake.hold.set()


async def test_cancel_queued_and_running(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    running = (await stub.SubmitJob(lab_request())).job.job_id
    await job_in_state(stub, running, pb.Job.STATE_RUNNING)
    queued = (await stub.SubmitJob(lab_request())).job.job_id
    cancelled = (await stub.CancelJob(pb.CancelJobRequest(job_id=queued, reason="not needed"))).job
    assert cancelled.state == pb.Job.STATE_CANCELLED
    stopping = (await stub.CancelJob(pb.CancelJobRequest(job_id=running))).job
    assert stopping.state == pb.Job.STATE_RUNNING and stopping.cancel_requested
    done = await job_in_state(stub, running, pb.Job.STATE_CANCELLED)
    assert fake.cancel_calls == [done.current_run.task_id]
    assert fake.started_jobs == [running]  # the cancelled queued job never ran


async def test_failed_run_and_delete(scheduler):
    stub, _, _ = scheduler
    job_id = (await stub.SubmitJob(lab_request(config={"fail": "PROGRAM_ERROR"}))).job.job_id
    failed = await job_in_state(stub, job_id, pb.Job.STATE_FAILED)
    assert failed.error.reason == "PROGRAM_ERROR"
    await expect_error(
        stub.CancelJob(pb.CancelJobRequest(job_id=job_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "JOB_ALREADY_FINISHED",
    )
    await stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id))
    await expect_error(
        stub.GetJob(pb.GetJobRequest(job_id=job_id)), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND"
    )


async def test_delete_refuses_active_jobs(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    job_id = (await stub.SubmitJob(lab_request())).job.job_id
    await expect_error(
        stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "JOB_NOT_TERMINAL",
    )
    fake.hold.set()


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (lab_request(priority=1000), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PRIORITY"),
        (lab_request(device="fridge-9"), grpc.StatusCode.NOT_FOUND, "DEVICE_NOT_FOUND"),
        (
            pb.SubmitJobRequest(device="qick", owner="alice"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAYLOAD_REQUIRED",
        ),
        # The owner is the authenticated caller (alice): naming someone else is refused.
        (lab_request(owner="bob"), grpc.StatusCode.PERMISSION_DENIED, "USER_MISMATCH"),
        (
            lab_request(config={"blob": "x" * (MAX_PAYLOAD_BYTES + 10)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            pb.SubmitJobRequest(
                device="qick",
                owner="alice",
                payload=pb.JobPayload(circuit=pb.CircuitProgram(qasm=["OPENQASM 2.0;"], shots=10)),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "KIND_NOT_SUPPORTED",
        ),
    ],
)
async def test_bad_submissions_are_refused_and_write_nothing(scheduler, request_, code, reason):
    stub, _, _ = scheduler
    await expect_error(stub.SubmitJob(request_), code, reason)
    assert not (await stub.ListJobs(pb.ListJobsRequest())).jobs


async def test_an_empty_owner_is_the_caller(scheduler, identity):
    # Formerly refused (INVALID_OWNER): the server fills the owner from the token.
    stub, fake, address = scheduler
    fake.hold = asyncio.Event()  # alice's job keeps the board: bob's stay queued
    job = (await stub.SubmitJob(lab_request(owner=""))).job
    assert job.owner == "alice"
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job.job_id))).job.owner == "alice"
    async with authed_channel(address, identity.token_for("bob")) as channel:
        bob = pb_grpc.JobServiceStub(channel)  # bob has no role
        bobs = (await bob.SubmitJob(lab_request(owner=""))).job
        assert bobs.owner == "bob"
        # His name with a note (as the seed's `user=` may carry) is accepted, and the job is
        # still his: listed under his name, and his to cancel without the operator role.
        noted = (await bob.SubmitJob(lab_request(owner="bob (lab laptop)"))).job
        assert noted.owner == "bob"
        listed = await stub.ListJobs(pb.ListJobsRequest(owner="bob"))
        assert {j.job_id for j in listed.jobs} == {bobs.job_id, noted.job_id}
        cancelled = (await bob.CancelJob(pb.CancelJobRequest(job_id=noted.job_id))).job
        assert cancelled.state == pb.Job.STATE_CANCELLED
    fake.hold.set()


async def test_submit_is_validated_by_the_executor(scheduler):
    stub, _, _ = scheduler
    bad = stub.SubmitJob(lab_request(config={"reject": ["expt.gain"]}))
    await expect_error(bad, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_EXPERIMENT_CONFIG")
    forbidden = lab_request()
    forbidden.payload.lab_experiment.experiment_module = "forbidden.module"
    await expect_error(stub.SubmitJob(forbidden), grpc.StatusCode.PERMISSION_DENIED, "MODULE_NOT_ALLOWED")
    assert not (await stub.ListJobs(pb.ListJobsRequest())).jobs


async def test_bad_reads(scheduler):
    stub, _, _ = scheduler
    bad_id = stub.GetJob(pb.GetJobRequest(job_id="JOB-42"))
    await expect_error(bad_id, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_JOB_ID")
    unknown = stub.GetJob(pb.GetJobRequest(job_id="JOB-20260101-00001"))
    await expect_error(unknown, grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    negative = stub.ListJobs(pb.ListJobsRequest(page_size=-1))
    await expect_error(negative, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_SIZE")
    forged = stub.ListJobs(pb.ListJobsRequest(page_token="eyJjIjpbMV19"))
    await expect_error(forged, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    watch = stub.WatchJob(pb.WatchJobRequest(job_id="JOB-20260101-00001"))
    await expect_error(watch.read(), grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")


async def test_history_pagination_with_filters(scheduler, identity):
    stub, fake, address = scheduler
    fake.hold = asyncio.Event()
    async with authed_channel(address, identity.token_for("bob")) as bob_channel:
        bob = pb_grpc.JobServiceStub(bob_channel)  # bob's jobs are submitted with bob's token
        ids = [
            (
                await (bob if i % 2 else stub).SubmitJob(lab_request(owner="bob" if i % 2 else "alice"))
            ).job.job_id
            for i in range(9)
        ]
    seen, token = [], ""
    while True:
        page = await stub.ListJobs(pb.ListJobsRequest(owner="bob", page_size=2, page_token=token))
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [i for n, i in enumerate(ids) if n % 2][::-1]
    first_page = await stub.ListJobs(pb.ListJobsRequest(owner="bob", page_size=2))
    changed = stub.ListJobs(
        pb.ListJobsRequest(owner="alice", page_size=2, page_token=first_page.next_page_token)
    )
    await expect_error(changed, grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_MISMATCH")
    fake.hold.set()


async def test_watch_queue_snapshot_then_changes(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    running = (await stub.SubmitJob(lab_request())).job.job_id
    await job_in_state(stub, running, pb.Job.STATE_RUNNING)
    stream = stub.WatchQueue(pb.WatchQueueRequest(device="qick"))
    first = await stream.read()
    assert [j.job_id for j in first.snapshot.jobs] == [running]
    added = (await stub.SubmitJob(lab_request())).job.job_id
    change = (await stream.read()).change
    while change.job.job_id == running:  # progress of the running job comes through too
        change = (await stream.read()).change
    assert change.job.job_id == added and change.previous_state == pb.Job.STATE_UNSPECIFIED
    stream.cancel()
    fake.hold.set()
    await expect_error(
        stub.WatchQueue(pb.WatchQueueRequest(device="nope")).read(),
        grpc.StatusCode.NOT_FOUND,
        "DEVICE_NOT_FOUND",
    )


async def test_a_run_the_scheduler_does_not_know_is_stopped_and_the_queue_goes_on(scheduler, fake_executor):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()
    # Somebody else's run occupies the board (as after a mis-configured second scheduler)...
    stranger = ExecutionRequest("JOB-20260101-09999", "other", "mallory", LabExperiment("X", "m"))
    fake.board.handle(EnqueueRuns(99, fake.board.tail, (stranger,)))
    job_id = (await stub.SubmitJob(lab_request())).job.job_id
    # ...so the executor's queue is not the one the scheduler believed: it reconnects, reconciles
    # (cancelling the stranger) and hands its own job over behind it.
    await eventually(lambda: "other" in fake.cancel_calls, what="the stranger cancelled")
    fake.hold.set()
    done = await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    assert done.run_count == 1 and fake.started_jobs == ["JOB-20260101-09999", job_id]


async def test_devices_health_and_reflection(scheduler):
    stub, _, address = scheduler
    devices = (await stub.ListDevices(pb.ListDevicesRequest())).devices
    kinds = {d.name: list(d.kinds) for d in devices}
    assert kinds == {
        "qick": [pb.JOB_KIND_LAB_EXPERIMENT],
        "fake:qpu": [pb.JOB_KIND_CIRCUIT, pb.JOB_KIND_BENCHMARK],  # from the gateway
    }
    async with authed_channel(address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name async for r in reflection for s in r.list_services_response.service}
    assert {"qsched.jobs.v1.JobService", "grpc.health.v1.Health"} <= names


async def test_one_job_is_one_trace(scheduler, spans):
    stub, fake, _ = scheduler
    job_id = (await stub.SubmitJob(lab_request())).job.job_id
    await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    submit = by_name["qsched.jobs.v1.JobService/SubmitJob"]
    # The run carries the submit's trace to the executor (its spans join the job's trace).
    trace_parent = fake.trace_headers[-1]
    assert trace_parent.split("-")[1] == format(submit.context.trace_id, "032x")


async def test_a_client_closing_a_watch_early_logs_no_error(scheduler, spans, caplog):
    """A WatchJob the client cancels ends its server span cleanly: no "Failed to detach context"."""
    import logging

    from opentelemetry.trace import SpanKind

    stub, _, _ = scheduler
    job_id = (await stub.SubmitJob(lab_request())).job.job_id
    caplog.set_level(logging.INFO)
    for _ in range(3):
        call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id))
        await call.read()  # the stream is open and has produced an item
        call.cancel()

    def server_watch_spans() -> int:
        return sum(
            1
            for s in spans.get_finished_spans()
            if s.name == "qsched.jobs.v1.JobService/WatchJob" and s.kind is SpanKind.SERVER
        )

    # The server finished each cancelled stream (its span ended): only then can the error appear.
    await eventually(server_watch_spans, until=lambda n: n >= 3, what="the cancelled watches' spans")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_stream_closed_from_another_context_ends_its_span_without_error(caplog):
    """What the server does with a stream the client abandoned while it was suspended at a `yield`
    (a WatchJob cancelled mid-write): it closes the generator from another task (context)."""
    import asyncio
    import logging
    from types import SimpleNamespace

    import grpc

    from qsched_runtime.tracing import ServerTracingInterceptor

    async def watch(request, context):
        for i in range(10):
            yield i

    async def continuation(details):
        return grpc.unary_stream_rpc_method_handler(watch)

    details = SimpleNamespace(method="/qsched.jobs.v1.JobService/WatchJob", invocation_metadata=())
    handler = await ServerTracingInterceptor().intercept_service(continuation, details)
    context = SimpleNamespace(code=lambda: None)
    stream = handler.unary_stream(None, context)
    caplog.set_level(logging.INFO)
    assert await stream.__anext__() == 0  # suspended at the yield, as while grpc writes the item
    await asyncio.create_task(stream.aclose())  # the cancelled call's clean-up runs elsewhere
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
