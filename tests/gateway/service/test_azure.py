"""Azure Quantum adapter (azure-quantum SDK) against a local double of the workspace's REST API and blob
storage (tests/support/azure_double.py): the SDK's own HTTP calls, over loopback."""

from __future__ import annotations

import json
import logging

import grpc
import pytest

from qsched.api.gateway.v1 import gateway_pb2 as pb
from tests.gateway.conftest import BELL_QASM2, circuits, error_reason, gateway_server, watch_all
from tests.support.azure_double import AzureQuantumDouble

pytestmark = pytest.mark.timeout(120)

AZURE_VARIABLES = (
    "AZURE_QUANTUM_CONNECTION_STRING",
    "AZURE_QUANTUM_RESOURCE_ID",
    "AZURE_QUANTUM_SUBSCRIPTION_ID",
    "AZURE_QUANTUM_WORKSPACE_RG",
    "AZURE_QUANTUM_WORKSPACE_NAME",
    "AZURE_QUANTUM_WORKSPACE_LOCATION",
    "AZURE_QUANTUM_API_KEY",
    "AZURE_QUANTUM_ENDPOINT",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "SUBSCRIPTION_ID",
    "RESOURCE_GROUP",
    "LOCATION",
    "QSCHED_GATEWAY_CREDENTIALS",
)
# measures qubits 2 and 0 of a 3-qubit GHZ state into c[0], c[1]: only 00 and 11
GHZ_PARTIAL = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[2];\n'
    "h q[0];\ncx q[0],q[1];\ncx q[1],q[2];\nmeasure q[2] -> c[0];\nmeasure q[0] -> c[1];\n"
)
# a Bell pair in register c and a flipped qubit in register d: qiskit keys "d c" -> "100" / "111"
TWO_REGISTERS = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[2];\ncreg d[1];\n'
    "h q[0];\ncx q[0],q[1];\nx q[2];\nmeasure q[0] -> c[0];\nmeasure q[1] -> c[1];\nmeasure q[2] -> d[0];\n"
)


def _clear(monkeypatch) -> None:
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def double(monkeypatch):
    """The double, with the gateway configured through a portal connection string + endpoint override."""
    _clear(monkeypatch)
    with AzureQuantumDouble() as fake:
        monkeypatch.setenv("AZURE_QUANTUM_CONNECTION_STRING", fake.connection_string())
        monkeypatch.setenv("AZURE_QUANTUM_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("QSCHED_GATEWAY_POLL_SECONDS", "0.02")
        yield fake


def _only_job(double: AzureQuantumDouble) -> dict:
    assert len(double.jobs) == 1
    return next(iter(double.jobs.values()))


async def test_azure_lists_the_workspace_targets(tmp_path, double):
    async with gateway_server(tmp_path) as (stub, _):
        providers = {p.name: p for p in (await stub.ListProviders(pb.ListProvidersRequest())).providers}
        assert providers["azure"].configured and providers["azure"].credentials_source == "environment"
        assert providers["azure"].sdk_version.startswith("azure-quantum 3.")
        listed = await stub.ListDevices(pb.ListDevicesRequest(provider="azure"))
        assert not listed.unavailable
        devices = {d.name: d for d in listed.devices}
        # rigetti.sim.qvm takes Quil, which the gateway does not write: not listed
        assert set(devices) == {
            "azure:ionq.simulator",
            "azure:ionq.qpu.aria-1",
            "azure:quantinuum.sim.h2-1sc",
            "azure:quantinuum.sim.h2-1e",
        }
        assert devices["azure:ionq.simulator"].qubits == 29 and devices["azure:ionq.simulator"].simulator
        aria = devices["azure:ionq.qpu.aria-1"]
        assert aria.qubits == 25 and not aria.simulator and aria.status == "DEGRADED"
        assert devices["azure:ionq.simulator"].device_status == pb.DEVICE_STATUS_ONLINE
        assert "cx" in devices["azure:ionq.simulator"].basis_gates
    assert any(path.endswith("/providerStatus") for _, path in double.requests)


async def test_azure_bell_submit_watch_fetch_and_reattach_after_restart(tmp_path, double):
    async with gateway_server(tmp_path) as (stub, gateway):
        submitted = await stub.Submit(
            pb.SubmitRequest(
                device="azure:ionq.simulator",
                workload=circuits(BELL_QASM2, GHZ_PARTIAL, shots=1000),
                job_id="J7",
            )
        )
        record = gateway.registry.task(submitted.task_ids[0])
        assert (record.state, record.provider_status) == ("QUEUED", "Waiting")  # as the create answered
        assert len(submitted.task_ids) == 2 and all(t.startswith("azure/") for t in submitted.task_ids)
        assert {t.removeprefix("azure/") for t in submitted.task_ids} == set(double.jobs)
        job = double.jobs[submitted.task_ids[0].removeprefix("azure/")]
        assert job["target"] == "ionq.simulator" and job["providerId"] == "ionq"
        assert (job["inputDataFormat"], job["outputDataFormat"]) == (
            "ionq.circuit.v1",
            "ionq.quantum-results.v1",
        )
        assert job["inputParams"]["shots"] == 1000 and job["name"] == "J7"
        assert job["metadata"]["qsched_job_id"] == "J7"
        container = f"job-{job['id']}"
        program = json.loads(double.blobs[(container, "inputData")]["data"])
        assert program["gateset"] == "qis" and program["qubits"] == 2
        assert {"gate": "x", "targets": [1], "controls": [0]} in program["circuit"]
        assert double.blobs[(container, "inputData")]["content_type"] == "application/json"
    async with gateway_server(tmp_path) as (stub, _):  # a restarted gateway re-attaches by task id
        statuses = await watch_all(stub, submitted.task_ids)
        states = {s.provider_status: s.state for s in statuses}
        assert states == {"Executing": pb.TASK_STATE_RUNNING, "Succeeded": pb.TASK_STATE_COMPLETED}
        assert statuses[-1].state == pb.TASK_STATE_COMPLETED
        result = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
        bell, ghz = (r.circuits[0].counts for r in result.results)
        assert bell == {"00": 500, "11": 500}
        assert ghz == {"00": 500, "11": 500}
        assert result.results[0].execution_seconds == pytest.approx(0.012)
        metadata = json.loads(result.results[0].metadata_json)
        assert metadata["target"] == "ionq.simulator" and metadata["status"] == "Succeeded"
        assert metadata["cost_estimate"] == {"currency": "USD", "estimated_total": 0.0}
        assert "sig=" not in result.results[0].metadata_json
    # the SDK's storage flow: a container SAS for the upload, a blob SAS for the results
    posted = [p for m, p in double.requests if m == "POST" and p.endswith("/storage/sasUri")]
    assert len(posted) >= 4
    assert ("GET", f"/qschedstore/{container}/rawOutputData") in double.requests


async def test_azure_quantinuum_qasm2_registers_and_estimate(tmp_path, double):
    async with gateway_server(tmp_path) as (stub, _):
        estimate = await stub.Estimate(
            pb.EstimateRequest(
                device="azure:quantinuum.sim.h2-1e", workload=circuits(TWO_REGISTERS, shots=100)
            )
        )
        assert estimate.cost_unit == "HQC" and estimate.cost == pytest.approx(estimate.per_circuit[0].hqc)
        assert estimate.cost > 5
        checker = await stub.Estimate(
            pb.EstimateRequest(device="azure:quantinuum.sim.h2-1sc", workload=circuits(TWO_REGISTERS))
        )
        assert checker.cost == 0 and checker.cost_unit == "HQC"
        ionq = await stub.Estimate(
            pb.EstimateRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2))
        )
        assert ionq.cost_unit == "" and "gate-shot" in ionq.cost_basis and ionq.jobs == 1

        submitted = await stub.Submit(
            pb.SubmitRequest(device="azure:quantinuum.sim.h2-1e", workload=circuits(TWO_REGISTERS, shots=100))
        )
        job = _only_job(double)
        assert job["inputDataFormat"] == "honeywell.openqasm.v1" and job["providerId"] == "quantinuum"
        source = double.blobs[(f"job-{job['id']}", "inputData")]["data"].decode()
        assert source.startswith("OPENQASM 2.0;") and "creg d[1];" in source
        statuses = await watch_all(stub, submitted.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_COMPLETED
        result = await stub.FetchResult(pb.FetchResultRequest(submission_id=submitted.submission_id))
        counts = result.results[0].circuits[0].counts
        assert set(counts) == {"100", "111"} and sum(counts.values()) == 100

        checked = await stub.Submit(
            pb.SubmitRequest(device="azure:quantinuum.sim.h2-1sc", workload=circuits(TWO_REGISTERS, shots=10))
        )
        assert (await watch_all(stub, checked.task_ids))[-1].state == pb.TASK_STATE_COMPLETED
        result = await stub.FetchResult(pb.FetchResultRequest(task_ids=checked.task_ids))
        assert result.results[0].circuits[0].counts == {"000": 10}  # a syntax checker answers zeros


async def test_azure_cancel_waiting_and_executing_jobs(tmp_path, double):
    async with gateway_server(tmp_path) as (stub, gateway):
        waiting = await stub.Submit(
            pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2), job_id="HOLD")
        )
        cancelled = await stub.Cancel(pb.CancelRequest(task_ids=waiting.task_ids))
        assert cancelled.statuses[0].state == pb.TASK_STATE_CANCELLED
        assert cancelled.statuses[0].provider_status == "Cancelled"
        assert (await watch_all(stub, waiting.task_ids))[-1].state == pb.TASK_STATE_CANCELLED

        running = await stub.Submit(
            pb.SubmitRequest(
                device="azure:ionq.simulator", workload=circuits(BELL_QASM2), job_id="HOLD-EXECUTING"
            )
        )
        call = stub.Watch(pb.WatchRequest(task_ids=running.task_ids))
        async for item in call:
            if item.status.state == pb.TASK_STATE_RUNNING:
                break
        call.cancel()
        requested = await stub.Cancel(pb.CancelRequest(task_ids=running.task_ids))
        # an executing job passes CancellationRequested/Cancelling before it is Cancelled
        assert requested.statuses[0].state == pb.TASK_STATE_RUNNING
        assert requested.statuses[0].provider_status == "Cancelling"
        statuses = await watch_all(stub, running.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_CANCELLED and statuses[-1].provider_status == "Cancelled"
        fetched = await stub.FetchResult(pb.FetchResultRequest(task_ids=running.task_ids))
        assert fetched.results[0].state == pb.TASK_STATE_CANCELLED and not fetched.results[0].circuits

        # the workspace lists both as Cancelled (jobs list with an OData filter, through the SDK)
        listed = gateway.adapters["azure"].workspace().list_jobs(status=["Cancelled"])
        assert {j.id for j in listed} == {
            t.removeprefix("azure/") for t in [*waiting.task_ids, *running.task_ids]
        }
    assert any(p.endswith(":cancel") for m, p in double.requests if m == "POST")


async def test_azure_failed_job_reports_the_service_error(tmp_path, double):
    async with gateway_server(tmp_path) as (stub, _):
        submitted = await stub.Submit(
            pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2), job_id="FAIL")
        )
        statuses = await watch_all(stub, submitted.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_FAILED and statuses[-1].provider_status == "Failed"
        assert statuses[-1].message == "ExecutionFailed: the double was told to fail this job"
        result = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
        assert result.results[0].state == pb.TASK_STATE_FAILED and not result.results[0].circuits


async def test_azure_refuses_a_program_it_cannot_send_before_creating_a_job(tmp_path, double):
    late_gate = BELL_QASM2.replace("measure q -> c;", "measure q[0] -> c[0];\nx q[0];\nmeasure q[1] -> c[1];")
    async with gateway_server(tmp_path) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Submit(pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(late_gate)))
        assert error_reason(info.value) == "INVALID_PROGRAM"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Submit(pb.SubmitRequest(device="azure:rigetti.sim.qvm", workload=circuits(BELL_QASM2)))
        assert error_reason(info.value) == "UNKNOWN_DEVICE"
    assert not double.jobs and not double.blobs


async def test_azure_bad_key_is_a_clear_auth_error_that_does_not_echo_the_key(tmp_path, monkeypatch):
    _clear(monkeypatch)
    wrong = "wrong-key-5c1e9d"
    with AzureQuantumDouble() as fake:
        monkeypatch.setenv("AZURE_QUANTUM_CONNECTION_STRING", fake.connection_string(api_key=wrong))
        monkeypatch.setenv("AZURE_QUANTUM_ENDPOINT", fake.endpoint)
        async with gateway_server(tmp_path) as (stub, _):
            providers = {p.name: p for p in (await stub.ListProviders(pb.ListProvidersRequest())).providers}
            assert providers["azure"].configured  # credentials are present, the service refuses them
            listed = await stub.ListDevices(pb.ListDevicesRequest(provider="azure"))
            assert not listed.devices and "refused the credentials" in listed.unavailable["azure"]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Submit(
                    pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2))
                )
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert error_reason(info.value) == "PROVIDER_AUTH_FAILED"
            assert "HTTP 401" in info.value.details() and wrong not in info.value.details()
            assert wrong not in listed.unavailable["azure"]
        assert fake.seen_keys and set(fake.seen_keys) == {wrong}  # it was sent, in the key header
        assert not fake.jobs


async def test_azure_malformed_settings_and_missing_settings(tmp_path, monkeypatch):
    _clear(monkeypatch)
    async with gateway_server(tmp_path) as (stub, _):
        providers = {p.name: p for p in (await stub.ListProviders(pb.ListProvidersRequest())).providers}
        assert not providers["azure"].configured and providers["azure"].credentials_source == "none"
        listed = await stub.ListDevices(pb.ListDevicesRequest(provider="azure"))
        assert {d.status for d in listed.devices} == {"UNKNOWN"}
        assert "azure:ionq.simulator" in {d.name for d in listed.devices}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Submit(pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2)))
        assert error_reason(info.value) == "PROVIDER_NOT_CONFIGURED"
    secret = "Zm9vYmFyc2VjcmV0a2V5"
    monkeypatch.setenv("AZURE_QUANTUM_CONNECTION_STRING", f"WorkspaceName=ws;ApiKey={secret};")
    async with gateway_server(tmp_path / "second") as (stub, _):
        listed = await stub.ListDevices(pb.ListDevicesRequest(provider="azure"))
        assert "invalid workspace settings" in listed.unavailable["azure"]
        assert secret not in listed.unavailable["azure"]


async def test_azure_key_from_separate_variables_never_reaches_logs_or_records(tmp_path, monkeypatch, caplog):
    _clear(monkeypatch)
    caplog.set_level(logging.DEBUG)
    key = "k3y-" + "9f8e7d6c5b4a" * 3
    with AzureQuantumDouble(api_key=key) as fake:
        monkeypatch.setenv("AZURE_QUANTUM_SUBSCRIPTION_ID", fake.subscription_id)
        monkeypatch.setenv("AZURE_QUANTUM_WORKSPACE_RG", fake.resource_group)
        monkeypatch.setenv("AZURE_QUANTUM_WORKSPACE_NAME", fake.workspace)
        monkeypatch.setenv("AZURE_QUANTUM_WORKSPACE_LOCATION", "East US")
        monkeypatch.setenv("AZURE_QUANTUM_API_KEY", key)
        monkeypatch.setenv("AZURE_QUANTUM_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("QSCHED_GATEWAY_POLL_SECONDS", "0.02")
        replies = []
        async with gateway_server(tmp_path) as (stub, _):
            replies.append(await stub.ListProviders(pb.ListProvidersRequest()))
            replies.append(await stub.ListDevices(pb.ListDevicesRequest(provider="azure")))
            done = await stub.Submit(
                pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2), job_id="J1")
            )
            held = await stub.Submit(
                pb.SubmitRequest(device="azure:ionq.simulator", workload=circuits(BELL_QASM2), job_id="HOLD")
            )
            replies += [done, held]
            replies += await watch_all(stub, done.task_ids)
            replies.append(await stub.FetchResult(pb.FetchResultRequest(task_ids=done.task_ids)))
            replies.append(await stub.Cancel(pb.CancelRequest(task_ids=held.task_ids)))
        assert replies[-2].results[0].circuits[0].counts == {"00": 100, "11": 100}
        assert fake.seen_keys and set(fake.seen_keys) == {key}  # the key did go out, in its header
    # the SDK's HTTP logging ran (headers redacted) and nothing logged carries the key
    assert "x-ms-quantum-api-key" in caplog.text.lower()
    assert key not in caplog.text
    for reply in replies:
        assert key not in str(reply)
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"ionq.simulator" in stored  # the registry was written ...
    assert key.encode() not in stored  # ... without the key
    assert b"sig=" not in stored  # nor any storage SAS
