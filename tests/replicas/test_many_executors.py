"""Executors on many hosts (issue 15, item 4): lab devices registered by configuration, each with
its own executor (`--lab-device NAME=HOST:PORT`). A device whose executor cannot be reached shows
so in ListDevices (on every replica) and its jobs wait, while the other devices keep running; when
its executor comes up, its jobs run."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.support.identity import authed_channel
from tests.support.replica_stack import ReplicaStack
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow
DONE = pb.Job.STATE_SUCCEEDED


def noop(device: str) -> pb.SubmitJobRequest:
    experiment = pb.LabExperiment(
        experiment_class="NoOpExperiment",
        experiment_module="qsched_hardware.experiments",
        expt_config_json=json.dumps({"sleep_s": 0.0}),
    )
    return pb.SubmitJobRequest(
        device=device, request_id=str(uuid.uuid4()), payload=pb.JobPayload(lab_experiment=experiment)
    )


def sdk_devices(address: str) -> dict[str, dict]:
    from qsched.client import JobClient

    client = JobClient(address)
    try:
        return {d["name"]: d for d in client.list_devices()}
    finally:
        client.close()


async def devices(stub) -> dict[str, pb.Device]:
    return {d.name: d for d in (await stub.ListDevices(pb.ListDevicesRequest(), timeout=10)).devices}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_device_whose_executor_is_down_shows_it_and_waits_while_the_others_run(
    tmp_path, backend, request
):
    if backend == "sqlite":
        url, replicas = f"sqlite:///{tmp_path / 'scheduler.db'}", 1
    else:
        url, replicas = request.getfixturevalue("postgres_databases")(), 2
    stack = ReplicaStack(tmp_path, url, replicas=replicas, boards=2)
    await asyncio.to_thread(stack.start_all, ("executor2",))  # board 2's host is down
    try:
        channels = [authed_channel(stack.address(name)) for name in stack.schedulers]
        stubs = [jobs_pb2_grpc.JobServiceStub(await ch.__aenter__()) for ch in channels]
        try:
            first, last = stubs[0], stubs[-1]
            up = (await first.SubmitJob(noop("qick1"), timeout=10)).job.job_id
            down = (await last.SubmitJob(noop("qick2"), timeout=10)).job.job_id
            await eventually(
                lambda: first.GetJob(pb.GetJobRequest(job_id=up), timeout=10),
                until=lambda r: r.job.state == DONE,
                timeout=60,
                what="qick1's job running while qick2's executor is down",
            )
            for stub in stubs:  # every replica shows it (with replicas: from the lease table)
                shown = await eventually(
                    lambda stub=stub: devices(stub),
                    until=lambda ds: (
                        ds["qick2"].executor_connection == pb.EXECUTOR_CONNECTION_UNREACHABLE
                        and ds["qick1"].executor_connection == pb.EXECUTOR_CONNECTION_CONNECTED
                    ),
                    timeout=30,
                    what="qick2 unreachable, qick1 connected",
                )
                assert shown["qick2"].executor_message and shown["qick2"].executor_connection_since.seconds
                assert (shown["qick2"].dispatched_by != "") == (backend == "postgres")
            # The SDK (and `qsched device list`) show it too.
            listed = await asyncio.to_thread(sdk_devices, stack.address(stack.schedulers[-1]))
            assert listed["qick2"]["executor"] == "unreachable" and listed["qick1"]["executor"] == "connected"
            waiting = (await first.GetJob(pb.GetJobRequest(job_id=down), timeout=10)).job
            assert waiting.state == pb.Job.STATE_QUEUED  # it waits; nothing failed

            await asyncio.to_thread(stack.start, "executor2")  # the host is back
            await eventually(
                lambda: last.GetJob(pb.GetJobRequest(job_id=down), timeout=10),
                until=lambda r: r.job.state == DONE,
                timeout=60,
                what="qick2's job running once its executor is up",
            )
            await eventually(
                lambda: devices(last),
                until=lambda ds: ds["qick2"].executor_connection == pb.EXECUTOR_CONNECTION_CONNECTED,
                timeout=30,
            )
        finally:
            for ch in channels:
                await ch.__aexit__(None, None, None)
    finally:
        stack.stop_all()
