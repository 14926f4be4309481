"""Benchmark configs are checked by the gateway at submit (its Validate RPC): a refused config
creates no job, alone or in a SubmitJobs batch; a config that passed is not asked about again."""

from __future__ import annotations

import json

import grpc
import pytest

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.wire import error_info


def benchmark(config: dict) -> pb.SubmitJobRequest:
    payload = pb.JobPayload(benchmark=pb.BenchmarkConfig(config_json=json.dumps(config)))
    return pb.SubmitJobRequest(device="fake:qpu", owner="alice", payload=payload)


async def jobs(stub) -> list[str]:
    return [j.job_id for j in (await stub.ListJobs(pb.ListJobsRequest())).jobs]


async def test_a_config_the_gateway_refuses_creates_no_job(scheduler, fake_gateway):
    stub, _, _ = scheduler
    gateway, _ = fake_gateway
    bad = benchmark({"benchmark_name": "WIT", "bogus": 1})
    for call in (stub.SubmitJob(bad), stub.SubmitJobs(pb.SubmitJobsRequest(requests=[benchmark({}), bad]))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        detail = error_info(caught.value)
        assert detail.reason == "INVALID_CONFIG" and detail.metadata["key"] == "bogus"
        assert "bogus" in caught.value.details()
    assert await jobs(stub) == []
    good = benchmark({"benchmark_name": "WIT"})
    first = (await stub.SubmitJob(good)).job.job_id
    asked = gateway.validate_calls
    second = (await stub.SubmitJob(good)).job.job_id
    assert gateway.validate_calls == asked  # the same config passed a moment ago
    assert sorted(await jobs(stub)) == sorted([first, second])
