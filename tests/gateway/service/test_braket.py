"""Braket: qiskit -> Braket conversion and the SDK's LocalSimulator behind the gateway."""

from __future__ import annotations

import json

import pytest

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched_gateway.providers.braket_convert import counts_to_qiskit, to_braket
from tests.gateway.conftest import BELL_BRAKET, BELL_QASM3, circuits, gateway_server, watch_all

pytestmark = pytest.mark.timeout(120)


def test_conversion_maps_gates_and_measured_clbits():
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(3, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.rzz(0.5, 1, 2)
    qc.sdg(2)
    qc.barrier()
    qc.measure(2, 0)
    qc.measure(0, 1)
    bc, order, clbits = to_braket(qc)
    names = [ins.operator.name for ins in bc.instructions]
    assert names[:4] == ["H", "CNot", "ZZ", "Si"] and order == [0, 2] and clbits == [1, 0]
    # Braket key "10": qubit 0 -> 1, qubit 2 -> 0; qiskit: clbit 1 (qubit 0) left, clbit 0 (qubit 2) right
    assert counts_to_qiskit({"10": 5}, [0, 2], dict(zip(order, clbits, strict=True)), 2) == {"10": 5}


def test_conversion_decomposes_composite_gates_and_rejects_mid_circuit_measurement():
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import QFTGate

    from qsched_gateway.errors import InvalidArgument

    qc = QuantumCircuit(3, 3)
    qc.append(QFTGate(3), range(3))
    qc.measure(range(3), range(3))
    bc, _, _ = to_braket(qc)
    assert bc.qubit_count == 3
    bad = QuantumCircuit(1, 1)
    bad.measure(0, 0)
    bad.x(0)
    with pytest.raises(InvalidArgument):
        to_braket(bad)


async def test_local_simulator_through_the_gateway_and_restart(tmp_path):
    async with gateway_server(tmp_path) as (stub, _):
        devices = await stub.ListDevices(pb.ListDevicesRequest(provider="braket"))
        names = {d.name: d for d in devices.devices}
        assert names["braket:local_sv"].qubits == 26 and names["braket:local_dm"].simulator
        submitted = await stub.Submit(
            pb.SubmitRequest(device="braket:local_sv", workload=circuits(BELL_QASM3, BELL_BRAKET, shots=300))
        )
        statuses = await watch_all(stub, submitted.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_COMPLETED
        estimate = await stub.Estimate(
            pb.EstimateRequest(device="braket:local_sv", workload=circuits(BELL_QASM3, BELL_BRAKET))
        )
        assert estimate.jobs == 2 and estimate.cost == 0  # one task per circuit
    async with gateway_server(tmp_path) as (stub, _):
        result = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
        for counts in result.results[0].circuits:
            assert sum(counts.counts.values()) == 300 and set(counts.counts) <= {"00", "11"}
        assert json.loads(result.results[0].metadata_json)["simulator"] == "braket_sv"


async def test_benchmark_on_braket_density_matrix_simulator(gateway):
    stub, _ = gateway
    config = {
        "benchmark_name": "Bernstein-Vazirani",
        "shots": 200,
        "min_qubits": 3,
        "max_qubits": 3,
        "max_circuits": 2,
    }
    submitted = await stub.Submit(
        pb.SubmitRequest(
            device="braket:local_dm", workload=pb.Workload(benchmark_config_json=json.dumps(config))
        )
    )
    await watch_all(stub, submitted.task_ids)
    result = await stub.FetchResult(pb.FetchResultRequest(submission_id=submitted.submission_id))
    record = json.loads(result.benchmark_results_json)
    assert record["platform"]["provider"] == "braket" and record["platform"]["device"] == "local_dm"
    assert record["results"]["accuracy_score"]["value"] == pytest.approx(1.0)
