"""Provider devices under replicas (issue 15): the replica holding a provider device's lease claims
and follows its runs; when it stops, another replica takes the device over and re-attaches to the
stored provider task ids (no second submission), as a restarted scheduler does."""

from __future__ import annotations

import contextlib

import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.scheduler.service.test_provider_jobs import circuit_request
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.stack import running_service
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres


async def test_a_provider_device_is_taken_over_and_its_running_job_followed(
    tmp_path, fake_executor, fake_gateway, postgres_databases
):
    url = postgres_databases()
    gateway, gateway_address = fake_gateway
    _, executor_address = fake_executor

    def replica(name: str):
        return running_service(
            "scheduler",
            tmp_path / "shared",
            {"gateway": gateway_address},
            lab_devices={"qick": executor_address},
            pin_configs=False,
            database_url=url,
        )

    async with contextlib.AsyncExitStack() as second:
        async with replica("a") as first_address, authed_channel(first_address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            job_id = (await stub.SubmitJob(circuit_request())).job.job_id
            await job_in_state(stub, job_id, pb.Job.STATE_RUNNING)
            await eventually(lambda: gateway.watches >= 1, what="replica a following the tasks")
            submitted = sorted(gateway.tasks)
            other = await second.enter_async_context(replica("b"))
        # a stopped (its leases given up): b takes fake:qpu over and follows the same tasks
        async with authed_channel(other) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            watches = gateway.watches
            await eventually(lambda: gateway.watches > watches, timeout=15, what="replica b re-attached")
            gateway.finish_all()
            done = await job_in_state(stub, job_id, pb.Job.STATE_SUCCEEDED)
            assert done.run_count == 1 and sorted(done.current_run.provider_task_ids) == submitted
            assert sorted(gateway.tasks) == submitted and gateway.submit_calls == 1  # submitted once
