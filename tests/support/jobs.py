"""JobService requests and expectations shared by the scheduler's service and stack tests: a lab
submission, a refusal with its reason, and waiting for a job's state (built on `eventually`)."""

from __future__ import annotations

import json

import grpc
import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.wire import error_info
from tests.support.waiting import eventually


async def job_in_state(stub, job_id: str, *states: int, timeout: float = 10.0) -> pb.Job:
    """The job once GetJob shows it in one of `states` (AssertionError after `timeout`)."""
    names = "/".join(pb.Job.State.Name(s) for s in states)
    response = await eventually(
        lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id)),
        until=lambda r: r.job.state in states,
        timeout=timeout,
        what=f"{job_id} reaching {names}",
    )
    return response.job


def lab_request(priority: int = 0, config: dict | None = None, **kw) -> pb.SubmitJobRequest:
    return pb.SubmitJobRequest(
        device=kw.pop("device", "qick"),
        priority=priority,
        owner=kw.pop("owner", "alice"),
        payload=pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class="AmplitudeRabiExperiment",
                experiment_module="experiments.single_qubit.amplitude_rabi",
                expt_config_json=json.dumps(config or {"reps": 1000}),
            )
        ),
        **kw,
    )


async def expect_error(call, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    detail = error_info(info.value)
    assert (detail.reason, detail.domain) == (reason, "qsched.jobs.v1")
