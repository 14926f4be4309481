"""Circuit and benchmark jobs through the real scheduler and the real gateway (local simulator)."""

from __future__ import annotations

import json

import pytest
import qiskit  # noqa: F401  (first import in the main thread: qiskit 2.5+ requires it)

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from tests.scheduler.service.test_provider_jobs import BELL
from tests.support.identity import authed_channel
from tests.support.jobs import job_in_state
from tests.support.stack import running_service

pytestmark = pytest.mark.slow
BV = {
    "benchmark_name": "Bernstein-Vazirani",
    "shots": 400,
    "min_qubits": 3,
    "max_qubits": 4,
    "max_circuits": 2,
}


@pytest.fixture
async def stack(tmp_path, fake_executor):
    async with running_service("gateway", tmp_path / "gateway") as gateway_address:
        peers = {"gateway": gateway_address}
        service = running_service(
            "scheduler",
            tmp_path / "scheduler",
            peers,
            lab_devices={"qick": fake_executor[1]},
            pin_configs=False,
        )
        async with service as address, authed_channel(address) as channel:
            yield jobs_pb2_grpc.JobServiceStub(channel)


async def test_bell_circuit_and_bv_benchmark_on_the_local_simulator(stack):
    stub = stack
    devices = {d.name for d in (await stub.ListDevices(pb.ListDevicesRequest())).devices}
    assert "local:aer_simulator" in devices

    circuit = pb.CircuitProgram(qasm=[BELL], shots=500)
    bell = (
        await stub.SubmitJob(
            pb.SubmitJobRequest(
                device="local:aer_simulator", owner="alice", payload=pb.JobPayload(circuit=circuit)
            )
        )
    ).job
    await job_in_state(stub, bell.job_id, pb.Job.STATE_SUCCEEDED, timeout=60)
    counts = (await stub.GetJobResult(pb.GetJobResultRequest(job_id=bell.job_id))).tasks[0].circuits[0].counts
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 500  # an ideal Bell pair

    benchmark = pb.JobPayload(benchmark=pb.BenchmarkConfig(config_json=json.dumps(BV)))
    estimate = (
        await stub.EstimateJob(pb.EstimateJobRequest(device="local:aer_simulator", payload=benchmark))
    ).estimate
    assert estimate.circuits >= 2 and estimate.total_shots >= 800
    bv = (
        await stub.SubmitJob(
            pb.SubmitJobRequest(device="local:aer_simulator", owner="alice", payload=benchmark)
        )
    ).job
    await job_in_state(stub, bv.job_id, pb.Job.STATE_SUCCEEDED, timeout=120)
    result = await stub.GetJobResult(pb.GetJobResultRequest(job_id=bv.job_id))
    records = json.loads(result.benchmark_results_json)
    record = records[0] if isinstance(records, list) else records
    score = record["results"]["score"]["value"]
    assert score > 0.95, record  # an ideal simulator scores near 1
