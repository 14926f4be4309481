"""Circuit and benchmark jobs through the queue to provider devices (the gateway double),
and end to end through the real gateway on the local simulator."""

from __future__ import annotations

import asyncio
import json
import signal

import grpc
import pytest

from qsched.api.gateway.v1 import gateway_pb2 as gpb
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.support import processes
from tests.support.identity import authed_channel
from tests.support.jobs import expect_error, job_in_state, lab_request
from tests.support.waiting import eventually

BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; cx q[0],q[1]; measure q -> c;'


def circuit_request(
    device: str = "fake:qpu", circuits: int = 1, options: dict | None = None
) -> pb.SubmitJobRequest:
    program = pb.CircuitProgram(
        qasm=[BELL] * circuits, shots=100, compiler_options_json=json.dumps(options or {})
    )
    return pb.SubmitJobRequest(device=device, owner="alice", payload=pb.JobPayload(circuit=program))


async def test_a_circuit_job_runs_on_the_provider_and_its_results_are_cached(scheduler, fake_gateway):
    stub, _, _ = scheduler
    gateway, _ = fake_gateway
    job_id = (await stub.SubmitJob(circuit_request(circuits=2))).job.job_id
    running = await job_in_state(stub, job_id, pb.Job.STATE_RUNNING)
    await eventually(lambda: gateway.watches >= 1)  # the scheduler follows the tasks
    task_ids = sorted(gateway.tasks)
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    assert sorted(job.current_run.provider_task_ids) == task_ids and running.kind == pb.JOB_KIND_CIRCUIT
    for task_id in task_ids:
        gateway.advance(task_id, gpb.TASK_STATE_RUNNING)
    started = await job_in_state(stub, job_id, pb.Job.STATE_RUNNING)
    gateway.finish_all()
    done = await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    assert done.current_run.HasField("start_time")
    events = [m.event.message async for m in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_seq=1))]
    assert any(m.startswith("submitted to fake:qpu") for m in events)
    assert "provider queue position 3" in events and "running on the provider" in events
    fetches = gateway.fetch_calls
    result = await stub.GetJobResult(pb.GetJobResultRequest(job_id=job_id))
    assert (
        result.cached
        and [dict(c.counts) for t in result.tasks for c in t.circuits] == [{"00": 60, "11": 40}] * 2
    )
    assert gateway.fetch_calls == fetches  # answered from the scheduler's cache
    fresh = await stub.GetJobResult(pb.GetJobResultRequest(job_id=job_id, refresh=True))
    assert not fresh.cached and gateway.fetch_calls == fetches + 1
    assert json.loads(fresh.benchmark_results_json) == [{"score": 0.99}]
    assert started.job_id == job_id


async def test_a_job_whose_tasks_end_before_the_follower_sees_them_running_has_a_start(
    scheduler, fake_gateway
):
    stub, _, _ = scheduler
    gateway, _ = fake_gateway
    gateway.auto_complete = True  # a fast provider: COMPLETED is the first state the follower sees
    job_id = (await stub.SubmitJob(circuit_request())).job.job_id
    done = await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
    run = done.current_run
    assert run.HasField("start_time") and run.start_time.ToDatetime() <= run.end_time.ToDatetime()


async def test_a_provider_device_takes_several_jobs_at_once(scheduler, fake_gateway):
    stub, _, _ = scheduler
    gateway, _ = fake_gateway
    ids = [(await stub.SubmitJob(circuit_request())).job.job_id for _ in range(3)]
    for job_id in ids:
        await job_in_state(stub, job_id, pb.Job.STATE_RUNNING)  # all three submitted together
    gateway.finish_all()
    for job_id in ids:
        await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)


async def test_provider_failures_refusals_and_cancel(scheduler, fake_gateway):
    stub, _, _ = scheduler
    gateway, _ = fake_gateway
    refused = (await stub.SubmitJob(circuit_request(options={"optimization_level": 3}))).job.job_id
    assert (await job_in_state(stub, refused, pb.Job.STATE_FAILED)).error.reason == "INVALID_PROGRAM"

    failing = (await stub.SubmitJob(circuit_request())).job.job_id
    await eventually(lambda: len(gateway.tasks) == 1)
    gateway.finish_all(gpb.TASK_STATE_FAILED)
    failed = await job_in_state(stub, failing, pb.Job.STATE_FAILED)
    assert failed.error.reason == "PROVIDER_TASK_FAILED" and "boom" in failed.error.message

    cancelled = (await stub.SubmitJob(circuit_request())).job.job_id
    await eventually(lambda: len(gateway.tasks) == 2)
    await stub.CancelJob(pb.CancelJobRequest(job_id=cancelled))
    assert (await job_in_state(stub, cancelled, pb.Job.STATE_CANCELLED)).error.reason == "CANCELLED"

    await expect_error(
        stub.SubmitJob(circuit_request(device="fake:nope")), grpc.StatusCode.NOT_FOUND, "DEVICE_NOT_FOUND"
    )
    await expect_error(
        stub.GetJobResult(pb.GetJobResultRequest(job_id=cancelled)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "RESULT_NOT_READY",
    )


async def test_estimate_and_results_are_for_provider_jobs_only(scheduler):
    stub, _, _ = scheduler
    estimate = await stub.EstimateJob(
        pb.EstimateJobRequest(device="fake:qpu", payload=circuit_request(circuits=3).payload)
    )
    assert (estimate.estimate.circuits, estimate.estimate.total_shots) == (3, 300)
    lab_payload = lab_request().payload
    await expect_error(
        stub.EstimateJob(pb.EstimateJobRequest(device="qick", payload=lab_payload)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "KIND_NOT_SUPPORTED",
    )
    lab_job = (await stub.SubmitJob(lab_request())).job.job_id
    await job_in_state(stub, lab_job, pb.Job.STATE_SUCCEEDED)
    await expect_error(
        stub.GetJobResult(pb.GetJobResultRequest(job_id=lab_job)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_A_PROVIDER_JOB",
    )


@pytest.mark.slow
async def test_kill_9_reattaches_to_provider_tasks_without_resubmitting(
    tmp_path, fake_gateway, fake_executor
):
    gateway, gateway_address = fake_gateway
    port = processes.free_port()
    address = f"127.0.0.1:{port}"
    args = [
        "serve", "scheduler", "--scheduler-address", address, "--gateway-address", gateway_address,
        "--lab-device", f"qick={fake_executor[1]}", "--data-dir", str(tmp_path / "data"),
        "--no-config-pinning",
    ]  # fmt: skip
    log = tmp_path / "scheduler.log"
    process = processes.start(args, log)
    assert await asyncio.to_thread(processes.serving, address), log.read_text()
    async with authed_channel(address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        job_id = (await stub.SubmitJob(circuit_request())).job.job_id
        await eventually(lambda: len(gateway.tasks) == 1)

        await eventually(
            lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)),
            until=lambda r: r.job.current_run.provider_task_ids,
            what="the provider task ids recorded",
        )
    processes.stop(process, signal.SIGKILL)
    gateway.finish_all()  # the provider finishes while the scheduler is down

    process = processes.start(args, log)
    try:
        assert await asyncio.to_thread(processes.serving, address), log.read_text()
        async with authed_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
            result = await stub.GetJobResult(pb.GetJobResultRequest(job_id=job_id))
            assert result.cached and result.tasks[0].circuits[0].counts["00"] == 60
        assert gateway.submit_calls == 1  # re-attached, never resubmitted
    finally:
        processes.stop(process)
