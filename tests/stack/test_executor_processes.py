"""Whole executor processes: one board, one executor (OS lock), and the scheduler's view of an
executor killed mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qsched.api.executor.v1 import executor_pb2 as pb
from qsched.api.executor.v1 import executor_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.support.identity import authed_channel
from tests.support.processes import free_port
from tests.support.stack import running_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow
PYTHON = sys.executable
START_TIMEOUT_S = 60


def start_executor(data_dir: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            PYTHON,
            "-m",
            "qsched_ops.serve",
            "executor",
            "--executor-address",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_serving(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline()  # blocks until the first line: "qsched executor serving on ..."
    assert "serving on" in line, (line, proc.poll())


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_second_executor_process_for_the_same_board_refuses_to_start(tmp_path):
    first = start_executor(tmp_path, free_port())
    try:
        wait_serving(first)
        second = start_executor(tmp_path, free_port())
        _, err = second.communicate(timeout=START_TIMEOUT_S)
        assert second.returncode == 1
        lock = tmp_path / "locks"
        assert "already owned by another executor" in err and str(lock) in err
        assert f"pid {first.pid}" in err
    finally:
        stop(first)
    # once the first is gone the board is free again
    third = start_executor(tmp_path, free_port())
    try:
        wait_serving(third)
    finally:
        stop(third)


async def _watch_until(stub, job_id: str, states: set[int]) -> jobs_pb2.Job:
    async for message in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id)):
        state = message.snapshot.state if message.HasField("snapshot") else message.event.state
        if state in states:
            return (await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).job
    job = (await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).job
    raise AssertionError(f"watch ended with the job in {jobs_pb2.Job.State.Name(job.state)}: {job.error}")


async def test_executor_killed_mid_run_fails_the_run_and_a_restarted_executor_takes_new_work(tmp_path):
    port = free_port()
    model = tmp_path / "slow_device.yml"
    # the simulated board takes real time (the program's own duration) so a run is caught mid-way
    from qsched_hardware.sim.device import DEFAULT_DEVICE_MODEL

    model.write_text(DEFAULT_DEVICE_MODEL.read_text().replace("realtime_factor: 0.0", "realtime_factor: 1.0"))
    executor = start_executor(tmp_path / "exec", port, "--device-model", str(model))
    await asyncio.to_thread(wait_serving, executor)
    address = f"127.0.0.1:{port}"
    try:
        async with (
            running_service(
                "scheduler", tmp_path / "sched", lab_devices={"qick": address}, pin_configs=False
            ) as sched,
            authed_channel(sched) as channel,
            authed_channel(address) as exec_channel,
        ):
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            long_rabi = {"expts": 101, "reps": 1000, "rounds": 50, "relax_delay": 200}  # ~20 s per round
            job = await submit(jobs, long_rabi, "long")
            # wait until the run is on the board (the scheduler has heard "started"), then kill it;
            # it may have started before the watch began: then the snapshot says so
            async for message in jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job)):
                if message.HasField("snapshot") and message.snapshot.state == jobs_pb2.Job.STATE_RUNNING:
                    break
                if message.HasField("event") and message.event.message.startswith("started"):
                    break
            # Two more, staged on the executor behind the long run when it dies.
            staged = [await submit(jobs, {"expts": 11, "reps": 20}, f"staged-{i}") for i in range(2)]
            for job_id in staged:
                await eventually(
                    lambda job_id=job_id: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)),
                    until=lambda r: r.job.current_run.staged,
                    what=f"{job_id} staged",
                )
            exec_stub = executor_pb2_grpc.HardwareExecutorServiceStub(exec_channel)
            device = (await exec_stub.GetDevice(pb.GetDeviceRequest())).device
            assert device.state == pb.DeviceInfo.STATE_BUSY and device.current_job_id == job
            os.kill(executor.pid, signal.SIGKILL)
            executor.wait()
            executor = start_executor(tmp_path / "exec", port)  # restarted promptly, same board
            await asyncio.to_thread(wait_serving, executor)
            failed = await asyncio.wait_for(_watch_until(jobs, job, {jobs_pb2.Job.STATE_FAILED}), 60)
            assert failed.error.reason == "EXECUTOR_LOST", failed.error
            for job_id in staged:  # re-attached, or back in the queue in their place: each runs once
                done = await asyncio.wait_for(
                    _watch_until(jobs, job_id, {jobs_pb2.Job.STATE_SUCCEEDED, jobs_pb2.Job.STATE_FAILED}), 60
                )
                assert done.state == jobs_pb2.Job.STATE_SUCCEEDED and done.run_count == 1, done
            ok = await submit(jobs, {"expts": 11, "reps": 20}, "after-restart")
            done = await asyncio.wait_for(
                _watch_until(jobs, ok, {jobs_pb2.Job.STATE_SUCCEEDED, jobs_pb2.Job.STATE_FAILED}), 60
            )
            assert done.state == jobs_pb2.Job.STATE_SUCCEEDED, done.error
    finally:
        stop(executor)


async def submit(jobs, expt: dict, request_id: str) -> str:
    response = await jobs.SubmitJob(
        jobs_pb2.SubmitJobRequest(
            device="qick",
            owner="alice",
            request_id=request_id,
            payload=jobs_pb2.JobPayload(
                lab_experiment=jobs_pb2.LabExperiment(
                    experiment_class="AmplitudeRabiExperiment",
                    experiment_module="qsched_hardware.experiments",
                    expt_config_json=json.dumps(expt),
                )
            ),
        )
    )
    return response.job.job_id
