"""IBM adapter offline: qiskit-ibm-runtime's own local testing mode (SamplerV2 on a fake backend)."""

from __future__ import annotations

import pytest

from qsched.api.gateway.v1 import gateway_pb2 as pb
from tests.gateway.conftest import BELL_QASM3, circuits, watch_all

pytestmark = pytest.mark.timeout(120)


async def test_sampler_local_testing_mode_on_a_fake_backend(gateway):
    stub, _ = gateway
    submitted = await stub.Submit(
        pb.SubmitRequest(device="ibm:fake_manila", workload=circuits(BELL_QASM3, shots=500))
    )
    statuses = await watch_all(stub, submitted.task_ids)
    assert statuses[-1].state == pb.TASK_STATE_COMPLETED and statuses[-1].provider_status == "DONE"
    result = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
    counts = result.results[0].circuits[0].counts
    assert sum(counts.values()) == 500 and counts["00"] + counts["11"] > 400
