"""IonQ adapter against a local test double of IonQ's REST API v0.4."""

from __future__ import annotations

import json

import pytest

from qsched.api.gateway.v1 import gateway_pb2 as pb
from tests.gateway.conftest import BELL_QASM2, circuits, gateway_server, watch_all
from tests.gateway.fake_ionq import FakeIonQ

pytestmark = pytest.mark.timeout(120)


def test_qis_gate_names_are_ionqs():
    """The gateway's one IonQ gate table, against the names IonQ documents for the qis gateset
    (the test doubles simulate programs by reading that table backwards)."""
    from qiskit import QuantumCircuit

    from qsched_gateway.providers.ionq import to_ionq

    qc = QuantumCircuit(3, 3)
    qc.sdg(0), qc.tdg(0), qc.sx(0), qc.sxdg(0), qc.cz(0, 1), qc.ccx(0, 1, 2)
    qc.rxx(0.1, 0, 1), qc.ryy(0.2, 0, 1), qc.rzz(0.3, 0, 1)
    qc.measure([0, 1, 2], [0, 1, 2])
    program, _ = to_ionq(qc)
    assert [(g["gate"], len(g.get("controls", []))) for g in program["circuit"]] == [
        ("si", 0), ("ti", 0), ("v", 0), ("vi", 0), ("z", 1), ("x", 2), ("xx", 0), ("yy", 0), ("zz", 0)
    ]  # fmt: skip
    assert program["circuit"][-1]["rotation"] == pytest.approx(0.3)


@pytest.fixture
def fake_ionq(monkeypatch):
    with FakeIonQ() as fake:
        monkeypatch.setenv("IONQ_API_KEY", fake.key)
        monkeypatch.setenv("IONQ_API_URL", fake.url)
        monkeypatch.setenv("QSCHED_GATEWAY_POLL_SECONDS", "0.02")
        yield fake


async def test_ionq_submit_watch_fetch_and_reattach_after_restart(tmp_path, fake_ionq):
    ghz = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[2];\n'
    ghz += "h q[0];\ncx q[0],q[1];\ncx q[1],q[2];\n"
    ghz += "measure q[2] -> c[0];\nmeasure q[0] -> c[1];\n"
    async with gateway_server(tmp_path) as (stub, _):
        providers = {p.name: p for p in (await stub.ListProviders(pb.ListProvidersRequest())).providers}
        assert providers["ionq"].configured and providers["ionq"].credentials_source == "environment"
        devices = await stub.ListDevices(pb.ListDevicesRequest(provider="ionq"))
        assert {d.name for d in devices.devices} == {"ionq:simulator", "ionq:qpu.aria-1"}
        submitted = await stub.Submit(
            pb.SubmitRequest(
                device="ionq:simulator", workload=circuits(BELL_QASM2, ghz, shots=1000), job_id="J7"
            )
        )
        assert len(submitted.task_ids) == 2 and all(t.startswith("ionq/") for t in submitted.task_ids)
        posted = next(iter(fake_ionq.jobs.values()))["body"]
        assert posted["type"] == "ionq.circuit.v1" and posted["input"]["gateset"] == "qis"
        assert {"gate": "x", "targets": [1], "controls": [0]} in posted["input"]["circuit"]
        assert posted["metadata"]["qsched_job_id"] == "J7"
    async with gateway_server(tmp_path) as (stub, _):  # a restarted gateway re-attaches by task id
        statuses = await watch_all(stub, submitted.task_ids)
        provider_words = [s.provider_status for s in statuses]
        assert "ready" in provider_words and statuses[-1].state == pb.TASK_STATE_COMPLETED
        result = await stub.FetchResult(pb.FetchResultRequest(task_ids=submitted.task_ids))
        bell, three = (r.circuits[0].counts for r in result.results)
        assert bell == {"00": 500, "11": 500}
        assert three == {"00": 500, "11": 500}  # qubits 2 and 0 of a GHZ state
        assert result.results[0].execution_seconds == pytest.approx(0.012)
        assert json.loads(result.results[0].metadata_json)["backend"] == "simulator"
    assert all(a == "apiKey test-key" for a in fake_ionq.seen_auth)


async def test_ionq_cancel(tmp_path, fake_ionq):
    async with gateway_server(tmp_path) as (stub, _):
        submitted = await stub.Submit(
            pb.SubmitRequest(device="ionq:simulator", workload=circuits(BELL_QASM2), job_id="HOLD")
        )
        cancelled = await stub.Cancel(pb.CancelRequest(task_ids=submitted.task_ids))
        assert cancelled.statuses[0].state == pb.TASK_STATE_CANCELLED
        statuses = await watch_all(stub, submitted.task_ids)
        assert statuses[-1].state == pb.TASK_STATE_CANCELLED


async def test_ionq_without_key_is_not_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("IONQ_API_KEY", raising=False)
    import grpc

    from tests.gateway.conftest import error_reason

    async with gateway_server(tmp_path) as (stub, _):
        providers = {p.name: p for p in (await stub.ListProviders(pb.ListProvidersRequest())).providers}
        assert not providers["ionq"].configured and providers["ionq"].credentials_source == "none"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Submit(pb.SubmitRequest(device="ionq:simulator", workload=circuits(BELL_QASM2)))
        assert error_reason(info.value) == "PROVIDER_NOT_CONFIGURED"
