"""A job's task id exists from submit (issue 17 defect 4): the job can be got, watched and cancelled
by it before it starts, the run that starts carries it, and a rerun gets a new one."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from qsched.api.jobs.v1 import jobs_pb2 as pb
from tests.scheduler.service.test_provider_jobs import circuit_request
from tests.support.jobs import expect_error, job_in_state, lab_request
from tests.support.waiting import eventually


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


async def test_a_job_queued_behind_a_busy_device_is_cancelled_by_its_task_id_and_never_starts(scheduler):
    stub, fake, _ = scheduler
    fake.hold = asyncio.Event()  # the first job keeps the board until released
    first = (await stub.SubmitJob(lab_request())).job  # claimed at submit (the device was idle)
    waiting = (await stub.SubmitJob(lab_request())).job
    assert is_uuid(first.task_id) and is_uuid(waiting.task_id) and first.task_id != waiting.task_id
    assert waiting.state == pb.Job.STATE_QUEUED
    running = await job_in_state(stub, first.job_id, pb.Job.STATE_RUNNING)
    assert running.current_run.task_id == first.task_id == running.task_id  # its run took it

    # Followed by its task id alone, before it starts.
    got = (await stub.GetJob(pb.GetJobRequest(task_id=waiting.task_id))).job
    assert (got.job_id, got.state, got.task_id) == (waiting.job_id, pb.Job.STATE_QUEUED, waiting.task_id)
    stream = stub.WatchJob(pb.WatchJobRequest(task_id=waiting.task_id))
    snapshot = await anext(aiter(stream))
    assert snapshot.snapshot.job_id == waiting.job_id

    # Cancelled by its task id alone.
    cancelled = (
        await stub.CancelJob(pb.CancelJobRequest(task_id=waiting.task_id, reason="changed my mind"))
    ).job
    assert (cancelled.job_id, cancelled.state) == (waiting.job_id, pb.Job.STATE_CANCELLED)
    watched = [m.event async for m in stream]  # the watch by task id ends with the cancel
    assert watched[-1].state == pb.Job.STATE_CANCELLED
    again = (await stub.CancelJob(pb.CancelJobRequest(task_id=waiting.task_id))).job  # idempotent
    assert again.state == pb.Job.STATE_CANCELLED

    # A later job runs after the first: the cancelled one never started (the board's order says so).
    later = (await stub.SubmitJob(lab_request())).job
    fake.hold.set()
    done = await job_in_state(stub, later.job_id, pb.Job.STATE_SUCCEEDED)
    assert fake.started_jobs == [first.job_id, later.job_id]
    assert waiting.task_id not in fake.runs  # never handed to the board to run
    assert done.current_run.task_id == later.task_id == done.task_id  # staged with its submit task id
    final = (await stub.GetJob(pb.GetJobRequest(task_id=waiting.task_id))).job
    assert final.state == pb.Job.STATE_CANCELLED and final.run_count == 0 and not final.HasField("start_time")


async def test_a_rerun_gets_a_new_task_id_and_the_old_one_still_names_the_job(scheduler):
    stub, _, _ = scheduler
    job = (await stub.SubmitJob(lab_request())).job
    first = await job_in_state(stub, job.job_id, pb.Job.STATE_SUCCEEDED)
    assert first.current_run.task_id == job.task_id
    rerun = (await stub.RerunJob(pb.RerunJobRequest(job_id=job.job_id))).job
    assert is_uuid(rerun.task_id) and rerun.task_id != job.task_id  # known at once, before it runs
    second = await job_in_state(stub, job.job_id, pb.Job.STATE_SUCCEEDED)
    assert second.current_run.task_id == rerun.task_id and second.current_run.attempt == 2
    runs = (await stub.ListRuns(pb.ListRunsRequest(job_id=job.job_id))).runs
    assert [r.task_id for r in runs] == [job.task_id, rerun.task_id]
    old = (await stub.GetJob(pb.GetJobRequest(task_id=job.task_id))).job  # an earlier run's id
    assert old.job_id == job.job_id and old.task_id == rerun.task_id
    # Cancelling by a task that is over never touches the job's later run.
    await expect_error(
        stub.CancelJob(pb.CancelJobRequest(task_id=job.task_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "TASK_NOT_CURRENT",
    )


async def test_task_id_lookups_refuse_unknown_and_mismatched_ids(scheduler):
    stub, _, _ = scheduler
    one = (await stub.SubmitJob(lab_request())).job
    two = (await stub.SubmitJob(lab_request())).job
    unknown = str(uuid.uuid4())
    await expect_error(
        stub.GetJob(pb.GetJobRequest(task_id=unknown)), grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND"
    )
    await expect_error(
        stub.CancelJob(pb.CancelJobRequest(task_id=unknown)), grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND"
    )
    stream = stub.WatchJob(pb.WatchJobRequest(task_id=unknown))
    await expect_error(anext(aiter(stream)), grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND")
    await expect_error(
        stub.GetJob(pb.GetJobRequest(job_id=one.job_id, task_id=two.task_id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "TASK_NOT_OF_JOB",
    )
    both = (await stub.GetJob(pb.GetJobRequest(job_id=one.job_id, task_id=one.task_id))).job
    assert both.job_id == one.job_id


async def test_a_provider_job_submits_with_its_submit_task_id(scheduler, fake_gateway):
    stub, _, _ = scheduler
    gateway, _ = fake_gateway
    job = (await stub.SubmitJob(circuit_request())).job
    assert is_uuid(job.task_id)
    running = await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
    assert running.current_run.task_id == job.task_id
    await eventually(lambda: job.task_id in gateway.by_request)  # the gateway's request id is the task id
    gateway.finish_all()
    await job_in_state(stub, job.job_id, pb.Job.STATE_SUCCEEDED)
    rerun = (await stub.RerunJob(pb.RerunJobRequest(job_id=job.job_id))).job
    assert rerun.task_id != job.task_id
    again = await job_in_state(stub, job.job_id, pb.Job.STATE_RUNNING)
    assert again.current_run.task_id == rerun.task_id and again.current_run.attempt == 2
    await eventually(lambda: rerun.task_id in gateway.by_request)
    gateway.finish_all()
    await job_in_state(stub, job.job_id, pb.Job.STATE_SUCCEEDED)
