"""Every lab run pins its config revisions through the real config service."""

from __future__ import annotations

import asyncio
import hashlib
import json

import grpc
import pytest

from qsched.api.configs.v1 import configs_pb2 as cpb
from qsched.api.configs.v1 import configs_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state, lab_request
from tests.support.stack import running_service
from tests.support.waiting import eventually


@pytest.fixture
async def lab(tmp_path, fake_executor, fake_gateway):
    """(jobs stub, configs stub, fake executor): scheduler + config service + executor double."""
    fake, executor_address = fake_executor
    async with running_service("configs", tmp_path / "configs") as configs_address:
        peers = {"configs": configs_address, "gateway": fake_gateway[1]}
        service = running_service(
            "scheduler", tmp_path / "scheduler", peers, lab_devices={"qick": executor_address}
        )
        async with (
            service as address,
            authed_channel(address) as jobs_channel,
            authed_channel(configs_address) as configs_channel,
        ):
            yield (
                jobs_pb2_grpc.JobServiceStub(jobs_channel),
                configs_pb2_grpc.ConfigServiceStub(configs_channel),
                fake,
            )


async def push(configs, text: str) -> cpb.ConfigRevision:
    try:
        etag = (await configs.GetMain(cpb.GetMainRequest(config_type="hardware_config"))).etag
    except grpc.aio.AioRpcError:
        etag = ""
    response = await configs.PushToMain(
        cpb.PushToMainRequest(
            config_type="hardware_config",
            content=text.encode(),
            original_filename="hardware_config.yml",
            creator="carol",
            etag=etag,
        )
    )
    return response.revision


async def test_a_push_racing_a_deep_queue_applies_to_every_run_not_started(lab):
    jobs, configs, fake = lab
    v1 = await push(configs, "qubit:\n  pi_gain: 0.40\n")
    fake.hold = asyncio.Event()
    first = (await jobs.SubmitJob(lab_request())).job.job_id
    await job_in_state(jobs, first, pb.Job.STATE_RUNNING)
    # A deep queue, some of it staged on the executor with v1 pinned, while main changes.
    rest = [(await jobs.SubmitJob(lab_request())).job.job_id for _ in range(8)]
    await eventually(lambda: len(fake.board.waiting), until=lambda n: n >= 2, what="runs staged")
    v2 = await push(configs, "qubit:\n  pi_gain: 0.47\n")
    fake.hold.set()
    done_first = await job_in_state(jobs, first, pb.Job.STATE_SUCCEEDED)
    assert dict(done_first.current_run.config_revisions) == {"hardware_config": v1.revision_id}
    v2_sha = hashlib.sha256(b"qubit:\n  pi_gain: 0.47\n").hexdigest()
    for job_id in rest:
        done = await job_in_state(jobs, job_id, pb.Job.STATE_SUCCEEDED)
        assert dict(done.current_run.config_revisions) == {"hardware_config": v2.revision_id}
        sent = fake.runs[done.current_run.task_id].request.configs
        assert [(c.revision_id, c.sha256) for c in sent] == [(v2.revision_id, v2_sha)]
    assert fake.started_jobs == [first, *rest]
    # Main pins come from memory: the config service has no record of them (docs/configs.md).
    shown = (await configs.GetRevision(cpb.GetRevisionRequest(revision_id=v1.revision_id))).revision
    assert shown.first_job_id == ""


async def test_named_revision_and_inline_override(lab):
    jobs, configs, _ = lab
    v1 = await push(configs, "qubit:\n  pi_gain: 0.40\n")
    await push(configs, "qubit:\n  pi_gain: 0.47\n")
    named = lab_request()
    named.payload.lab_experiment.config_revisions["hardware_config"] = v1.revision_id
    job = await job_in_state(jobs, (await jobs.SubmitJob(named)).job.job_id, pb.Job.STATE_SUCCEEDED)
    assert job.current_run.config_revisions["hardware_config"] == v1.revision_id

    inline = lab_request()
    inline.payload.lab_experiment.config_overrides["hardware_config"] = "qubit:\n  pi_gain: 0.51\n"
    job = await job_in_state(jobs, (await jobs.SubmitJob(inline)).job.job_id, pb.Job.STATE_SUCCEEDED)
    override_id = job.current_run.config_revisions["hardware_config"]
    stored = (await configs.GetRevision(cpb.GetRevisionRequest(revision_id=override_id))).revision
    assert stored.content == b"qubit:\n  pi_gain: 0.51\n" and stored.first_job_id == job.job_id
    main = (await configs.GetMain(cpb.GetMainRequest(config_type="hardware_config"))).revision
    assert main.revision_id != override_id  # an override never moves main


async def test_no_main_revision_fails_the_job_with_that_reason(lab):
    jobs, _, fake = lab
    job = await job_in_state(jobs, (await jobs.SubmitJob(lab_request())).job.job_id, pb.Job.STATE_FAILED)
    assert job.error.reason == "NO_MAIN_REVISION"
    assert "hardware_config" in job.error.message
    assert not fake.runs  # the board was never used
    assert json.loads(job.payload.lab_experiment.expt_config_json) == {"reps": 1000}
