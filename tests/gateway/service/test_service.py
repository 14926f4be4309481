"""The gateway service over gRPC with the local provider: providers, devices, estimates, circuits in
OpenQASM 2/3 and QPY, Submit/Watch/Cancel/FetchResult, idempotency, errors, restart re-attach."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from qsched.api.gateway.v1 import gateway_pb2 as pb
from tests.gateway.conftest import (
    BELL_BRAKET,
    BELL_QASM2,
    BELL_QASM3,
    Blocker,
    circuits,
    error_reason,
    gateway_server,
    watch_all,
)

pytestmark = pytest.mark.timeout(120)


async def test_list_providers_names_installed_sdks_without_secrets(gateway, monkeypatch):
    stub, _ = gateway
    response = await stub.ListProviders(pb.ListProvidersRequest())
    by_name = {p.name: p for p in response.providers}
    assert {"local", "braket", "ibm", "ionq"} <= set(by_name)  # azure: no adapter yet
    local = by_name["local"]
    assert local.configured and local.credentials_source == "not needed"
    assert "qiskit-aer" in local.sdk_version
    assert by_name["braket"].configured  # the local simulators need no account


async def test_list_devices_local(gateway):
    stub, _ = gateway
    response = await stub.ListDevices(pb.ListDevicesRequest(provider="local"))
    devices = {d.name: d for d in response.devices}
    ideal = devices["local:aer_simulator"]
    assert ideal.simulator and ideal.qubits == 30 and not ideal.coupling and ideal.noise_model == ""
    manila = devices["local:fake_manila"]
    assert manila.qubits == 5 and manila.noise_model == "fake_manila"
    assert {(p.a, p.b) for p in manila.coupling} >= {(0, 1), (1, 2), (2, 3), (3, 4)}
    assert manila.device_status == pb.DEVICE_STATUS_ONLINE


async def test_list_devices_by_name_is_a_lookup(gateway):
    stub, _ = gateway
    names = ["local:aer_simulator", "ibm:fake_manila", "local:fake_nowhere", "nope:x"]
    response = await stub.ListDevices(pb.ListDevicesRequest(names=names))
    assert sorted(d.name for d in response.devices) == ["ibm:fake_manila", "local:aer_simulator"]


async def test_unknown_provider_and_device(gateway):
    stub, _ = gateway
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ListDevices(pb.ListDevicesRequest(provider="rigetti"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and error_reason(info.value) == "UNKNOWN_PROVIDER"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Submit(pb.SubmitRequest(device="local:fake_nowhere", workload=circuits(BELL_QASM2)))
    assert error_reason(info.value) == "UNKNOWN_DEVICE"


async def test_estimate_circuits_counts_gates(gateway):
    stub, _ = gateway
    qasm = BELL_QASM2.replace("measure q -> c;", "reset q[1];\nccx q[0],q[1],q[1];\nmeasure q -> c;")
    qasm = qasm.replace("ccx q[0],q[1],q[1]", "barrier q;\nx q[1]")
    response = await stub.Estimate(
        pb.EstimateRequest(device="local:aer_simulator", workload=circuits(qasm, BELL_QASM3))
    )
    assert (response.jobs, response.circuits, response.total_shots, response.max_qubits) == (1, 2, 400, 2)
    first = response.per_circuit[0]
    assert (first.one_qubit_gates, first.two_qubit_gates, first.measurements, first.resets) == (2, 1, 2, 1)
    assert first.multi_qubit_gates == 0  # a barrier is not a gate
    assert response.total_two_qubit_gates == 2 and response.cost_unit == ""
    assert first.hqc == pytest.approx(5 + 200 * (2 + 10 + 5 * (2 + 1 + 2)) / 5000)


async def test_estimate_wit_matches_metriq_gym(gateway):
    stub, _ = gateway
    workload = pb.Workload(
        benchmark_config_json=json.dumps({"benchmark_name": "WIT", "num_qubits": 7, "shots": 8192})
    )
    response = await stub.Estimate(pb.EstimateRequest(device="local:aer_simulator", workload=workload))
    c = response.per_circuit[0]
    # metriq-gym's estimate of WIT on local: 1 job, 1 circuit, 8192 shots, 7 qubits, 57 1q, 24 2q, 1 meas.
    assert (response.jobs, response.circuits, response.total_shots, response.max_qubits) == (1, 1, 8192, 7)
    assert (c.one_qubit_gates, c.two_qubit_gates, c.measurements, c.depth) == (57, 24, 1, 39)
    assert json.loads(response.params_json)["num_qubits"] == 7


async def test_submit_watch_fetch_qasm2_qasm3_braket_dialect_and_qpy(gateway):
    from qiskit import QuantumCircuit

    from qsched_gateway.programs import dump_qpy

    stub, _ = gateway
    ghz = QuantumCircuit(3, 3)
    ghz.h(0)
    ghz.cx(0, 1)
    ghz.cx(1, 2)
    ghz.measure(range(3), range(3))
    workload = circuits(BELL_QASM2, BELL_QASM3, BELL_BRAKET, shots=300)
    workload.circuits.qpy.append(dump_qpy([ghz]))
    submitted = await stub.Submit(
        pb.SubmitRequest(device="local:aer_simulator", workload=workload, job_id="JOB-1")
    )
    assert len(submitted.task_ids) == 1 and submitted.task_ids[0].startswith("local/")
    statuses = await watch_all(stub, submitted.task_ids)
    assert statuses[-1].state == pb.TASK_STATE_COMPLETED
    assert statuses[0].provider_task_id == submitted.task_ids[0].split("/", 1)[1]
    result = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
    task = result.results[0]
    assert [c.index for c in task.circuits] == [0, 1, 2, 3]
    for counts in task.circuits[:3]:
        assert sum(counts.counts.values()) == 300 and set(counts.counts) <= {"00", "11"}
    assert set(task.circuits[3].counts) <= {"000", "111"}
    meta = json.loads(task.metadata_json)
    assert meta["simulator"] == "aer_simulator" and meta["device"] == "local:aer_simulator"
    assert task.execution_seconds > 0 and result.benchmark_results_json == ""
    # re-attaching to a finished task answers at once with its terminal status
    again = await watch_all(stub, submitted.task_ids)
    assert [s.state for s in again] == [pb.TASK_STATE_COMPLETED]


async def test_noisy_fake_backend_leaks_into_odd_parity(gateway):
    stub, _ = gateway
    submitted = await stub.Submit(
        pb.SubmitRequest(device="local:fake_manila", workload=circuits(BELL_QASM2, shots=2000))
    )
    await watch_all(stub, submitted.task_ids)
    result = await stub.FetchResult(pb.FetchResultRequest(submission_id=submitted.submission_id))
    counts = result.results[0].circuits[0].counts
    assert counts.get("01", 0) + counts.get("10", 0) > 0
    assert json.loads(result.results[0].metadata_json)["noise_model"] == "fake_manila"


async def test_submit_is_idempotent_by_request_id(gateway):
    stub, _ = gateway
    request = pb.SubmitRequest(
        device="local:aer_simulator", workload=circuits(BELL_QASM2), request_id="req-1"
    )
    first = await stub.Submit(request)
    second = await stub.Submit(request)
    assert second.deduplicated and list(second.task_ids) == list(first.task_ids)
    assert second.submission_id == first.submission_id


async def test_invalid_programs_are_rejected(gateway):
    stub, _ = gateway
    for workload in [
        circuits("OPENQASM 2.0; qreg q[1]; bogus q[0];"),
        circuits('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\nh q[0];'),  # measures nothing
        circuits(BELL_QASM2, shots=0),
        pb.Workload(),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Submit(pb.SubmitRequest(device="local:aer_simulator", workload=workload))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_circuit_wider_than_device(gateway):
    stub, _ = gateway
    wide = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[6];\ncreg c[6];\nh q[5];\nmeasure q -> c;'
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Estimate(pb.EstimateRequest(device="local:fake_manila", workload=circuits(wide)))
    assert error_reason(info.value) == "DEVICE_TOO_SMALL"


async def test_cancel_queued_local_task(gateway):
    stub, gw = gateway
    blocker = Blocker(gw)
    try:
        submitted = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2))
        )
        stream = stub.Watch(pb.WatchRequest(task_ids=submitted.task_ids))
        first = await stream.read()
        assert first.status.state == pb.TASK_STATE_QUEUED and first.status.queue_position >= 1
        cancelled = await stub.Cancel(pb.CancelRequest(task_ids=submitted.task_ids))
        assert cancelled.statuses[0].state == pb.TASK_STATE_CANCELLED
        last = first
        while (item := await stream.read()) is not grpc.aio.EOF:
            last = item
        assert last.status.state == pb.TASK_STATE_CANCELLED
        fetched = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
        assert fetched.results[0].state == pb.TASK_STATE_CANCELLED and not fetched.results[0].circuits
    finally:
        blocker.release()


async def test_fetch_before_done_is_not_ready(gateway):
    stub, gw = gateway
    blocker = Blocker(gw)
    try:
        submitted = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2))
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(info.value) == "RESULT_NOT_READY"
    finally:
        blocker.release()
    statuses = await watch_all(stub, submitted.task_ids)
    assert statuses[-1].state == pb.TASK_STATE_COMPLETED


async def test_unknown_task(gateway):
    stub, _ = gateway
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await watch_all(stub, ["local/nope"])
    assert error_reason(info.value) == "UNKNOWN_TASK"


async def test_restart_keeps_finished_results_and_fails_lost_local_tasks(tmp_path):
    async with gateway_server(tmp_path) as (stub, gw):
        done = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2))
        )
        await watch_all(stub, done.task_ids)
        blocker = Blocker(gw)
        lost = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2))
        )
    blocker.release()
    async with gateway_server(tmp_path) as (stub, _):
        result = await stub.FetchResult(pb.FetchResultRequest(task_ids=done.task_ids))
        assert sum(result.results[0].circuits[0].counts.values()) == 200
        statuses = await watch_all(stub, lost.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_FAILED and "lost" in statuses[-1].message
        again = await stub.Submit(
            pb.SubmitRequest(device="local:aer_simulator", workload=circuits(BELL_QASM2), request_id="x")
        )
        await asyncio.wait_for(watch_all(stub, again.task_ids), 60)
