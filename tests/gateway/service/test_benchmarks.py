"""metriq-gym benchmark configs: JSON Schema validation (unknown keys rejected by name), circuit
building, scoring on an ideal simulator (near 1) and a noisy fake backend (lower), suites."""

from __future__ import annotations

import json

import grpc
import pytest

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched_benchmarks import registry as benchmarks
from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.errors import InvalidArgument
from tests.gateway.conftest import error_reason, watch_all

pytestmark = pytest.mark.timeout(120)

# Small configs, as metriq-gym job config files (benchmark_name + keys).
CONFIGS = {
    "bv": {
        "benchmark_name": "Bernstein-Vazirani",
        "shots": 400,
        "min_qubits": 3,
        "max_qubits": 4,
        "max_circuits": 2,
    },
    "hs": {
        "benchmark_name": "Hidden Shift",
        "shots": 400,
        "min_qubits": 2,
        "max_qubits": 4,
        "max_circuits": 2,
    },
    "pe": {
        "benchmark_name": "Phase Estimation",
        "shots": 400,
        "min_qubits": 3,
        "max_qubits": 4,
        "max_circuits": 2,
    },
    "qft": {"benchmark_name": "Quantum Fourier Transform", "shots": 400, "num_qubits": 3, "max_circuits": 2},
    "wit": {"benchmark_name": "WIT", "shots": 1000},
    "mirror": {"benchmark_name": "Mirror Circuits", "shots": 400, "width": 4, "num_circuits": 3, "seed": 5},
}
LINE = DeviceInfo("test", "line7", 7, coupling=[(i, i + 1) for i in range(6)])


def test_every_listed_benchmark_validates_its_defaults():
    minimal = {
        "QML Kernel": {"num_qubits": 3},
        "Linear Ramp QAOA": {"graph_type": "1D", "num_qubits": 4},
        "EPLG": {"num_qubits_in_chain": 4},
    }
    for name in benchmarks.BENCHMARKS:
        bench, params = benchmarks.validate({"benchmark_name": name, **minimal.get(name, {})})
        assert bench.name == name and params["shots"] >= 1


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"benchmark_name": "WIT", "shots": 100, "num_qbits": 7}, "unknown key 'num_qbits'"),
        ({"benchmark_name": "WIT", "num_qubits": 8}, "'num_qubits' must be one of"),
        ({"benchmark_name": "Bernstein-Vazirani", "shots": "many"}, "'shots' must be integer"),
        ({"benchmark_name": "Bernstein-Vazirani", "input_value": 3}, "max_circuits must be 1"),
        ({"benchmark_name": "Mirror Circuits", "num_layers": 0}, "'num_layers' = 0 violates minimum 1"),
        ({"benchmark_name": "QML Kernel"}, "required key 'num_qubits' is missing"),
        (
            {"benchmark_name": "Linear Ramp QAOA", "graph_type": "1D", "num_qubits": 4, "qaoa_layers": [2]},
            "'qaoa_layers[0]'",
        ),
        ({"benchmark_name": "CLOPS", "mode": "twirled"}, "mode 'twirled'"),
    ],
)
def test_schema_errors_name_the_key(config, needle):
    with pytest.raises(InvalidArgument) as info:
        benchmarks.validate(config)
    assert needle in info.value.message and info.value.reason == "INVALID_CONFIG"


def test_unknown_and_unsupported_benchmarks():
    for name, reason in [("Quantum Volume", "not supported"), ("Grover", "unknown benchmark_name")]:
        with pytest.raises(InvalidArgument) as info:
            benchmarks.validate({"benchmark_name": name})
        assert reason in info.value.message and info.value.reason == "UNKNOWN_BENCHMARK"


def test_building_is_reproducible():
    for config in CONFIGS.values():
        bench, params = benchmarks.validate(config)
        first, second = bench.build(params, LINE), bench.build(params, LINE)
        assert [str(c) for c in first.circuits] == [str(c) for c in second.circuits]
        assert first.data == second.data


def test_mirror_without_seed_records_the_drawn_seed():
    bench, params = benchmarks.validate({"benchmark_name": "Mirror Circuits", "width": 3, "num_circuits": 2})
    built = bench.build(params, LINE)
    again = bench.build({**params, "seed": built.data["seed"]}, LINE)
    assert [str(c) for c in built.circuits] == [str(c) for c in again.circuits]


def test_bseq_reaches_the_quantum_chsh_bound_on_an_ideal_line():
    from qiskit_aer import AerSimulator

    bench, params = benchmarks.validate({"benchmark_name": "BSEQ", "shots": 4000})
    device = DeviceInfo("test", "line4", 4, coupling=[(0, 1), (1, 2), (2, 3)])
    built = bench.build(params, device)
    result = AerSimulator().run(built.circuits, shots=4000, seed_simulator=3).result()
    counts = [result.get_counts(i) for i in range(len(built.circuits))]
    scored = bench.score(params, built.data, counts, benchmarks.ScoreContext())
    assert all(v == pytest.approx(2 * 2**0.5, abs=0.15) for v in scored["chsh_per_edge"].values())
    assert scored["largest_connected_size"] == 4 and scored["fraction_connected"] == 1.0


async def _run(stub, device, workload) -> tuple[pb.SubmitResponse, object]:
    submitted = await stub.Submit(pb.SubmitRequest(device=device, workload=workload, job_id="JOB-B"))
    statuses = await watch_all(stub, submission_id=submitted.submission_id)
    assert {s.state for s in statuses if s.state in (3, 4, 5)} == {pb.TASK_STATE_COMPLETED}
    result = await stub.FetchResult(pb.FetchResultRequest(submission_id=submitted.submission_id))
    return submitted, json.loads(result.benchmark_results_json)


def _suite(name: str) -> pb.Workload:
    entries = [{"name": key, "config": config} for key, config in CONFIGS.items()]
    return pb.Workload(suite_json=json.dumps({"name": name, "description": "test", "benchmarks": entries}))


async def test_suite_scores_near_one_ideal_and_lower_on_a_noisy_fake_backend(gateway):
    stub, _ = gateway
    submitted, ideal = await _run(stub, "local:aer_simulator", _suite("ideal"))
    assert len(submitted.task_ids) == len(CONFIGS)  # one local task per entry
    assert [r["job_type"] for r in ideal] == [c["benchmark_name"] for c in CONFIGS.values()]
    suite_ids = {r["suite_id"] for r in ideal}
    assert len(suite_ids) == 1 and ideal[0]["suite"]["name"] == "ideal"
    ideal_scores = {r["job_type"]: r["results"]["score"]["value"] for r in ideal}
    assert all(v >= 0.97 for v in ideal_scores.values()), ideal_scores
    record = ideal[0]
    assert set(record) >= {"app_version", "timestamp", "job_type", "results", "runtime_seconds", "platform"}
    assert record["platform"]["device"] == "aer_simulator" and record["platform"]["provider"] == "local"
    assert record["platform"]["device_metadata"]["simulator"] is True
    assert record["circuit_metadata"]["input_two_qubit_gate_counts"]
    assert record["results"]["accuracy_score"]["uncertainty"] is not None
    assert {"fidelity", "hf_fidelity"} <= set(
        next(iter(next(iter(record["results"]["circuit_metrics"].values())).values()))
    )
    wit = next(r for r in ideal if r["job_type"] == "WIT")
    # Binomial sqrt(p(1-p)/N): exactly 0 when the ideal simulator measures every shot alike.
    assert 0 <= wit["results"]["expectation_value"]["uncertainty"] < 0.01

    _, noisy = await _run(stub, "local:fake_lagos", _suite("noisy"))
    noisy_scores = {r["job_type"]: r["results"]["score"]["value"] for r in noisy}
    assert sum(noisy_scores.values()) < sum(ideal_scores.values()) - 0.3, noisy_scores
    assert noisy_scores["WIT"] < ideal_scores["WIT"]
    assert noisy[0]["circuit_metadata"]["transpiled_two_qubit_gate_counts"]


async def test_single_benchmark_returns_one_record_and_rejects_unknown_keys(gateway):
    stub, _ = gateway
    config = {"benchmark_name": "QML Kernel", "num_qubits": 3, "shots": 200}
    submitted, record = await _run(
        stub, "local:aer_simulator", pb.Workload(benchmark_config_json=json.dumps(config))
    )
    assert record["job_type"] == "QML Kernel" and record["suite_id"] is None
    assert record["results"]["accuracy_score"]["value"] == pytest.approx(1.0)
    assert json.loads(submitted.params_json) == config
    bad = pb.Workload(benchmark_config_json=json.dumps({**config, "num_qubit": 3}))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Submit(pb.SubmitRequest(device="local:aer_simulator", workload=bad))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "num_qubit" in info.value.details()
    assert error_reason(info.value) == "INVALID_CONFIG"


async def test_suite_entry_errors_name_the_entry(gateway):
    stub, _ = gateway
    suite = {"name": "s", "benchmarks": [{"name": "w", "config": {"benchmark_name": "WIT", "shotz": 1}}]}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Estimate(
            pb.EstimateRequest(
                device="local:aer_simulator", workload=pb.Workload(suite_json=json.dumps(suite))
            )
        )
    assert "suite entry 'w'" in info.value.details() and "shotz" in info.value.details()


async def test_remaining_benchmarks_score_on_local_devices(gateway):
    stub, _ = gateway
    _, clops = await _run(
        stub,
        "local:aer_simulator",
        pb.Workload(
            benchmark_config_json=json.dumps(
                {"benchmark_name": "CLOPS", "num_qubits": 3, "num_layers": 4, "num_circuits": 3, "shots": 20}
            )
        ),
    )
    assert clops["results"]["clops_score"]["value"] > 0 and clops["results"]["steady_state_clops"] is None
    _, bseq = await _run(
        stub,
        "local:fake_manila",
        pb.Workload(benchmark_config_json=json.dumps({"benchmark_name": "BSEQ", "shots": 500})),
    )
    assert 0 <= bseq["results"]["largest_connected_size"] <= 5
    assert bseq["results"]["fraction_connected"] == bseq["results"]["largest_connected_size"] / 5
    qaoa_config = {
        "benchmark_name": "Linear Ramp QAOA",
        "graph_type": "1D",
        "num_qubits": 4,
        "qaoa_layers": [3, 5],
        "shots": 300,
        "trials": 2,
        "num_random_trials": 10,
    }
    _, qaoa = await _run(
        stub, "local:aer_simulator", pb.Workload(benchmark_config_json=json.dumps(qaoa_config))
    )
    results = qaoa["results"]
    assert len(results["approx_ratio"]) == 2 and all(
        r > results["random_approx_ratio"] for r in results["approx_ratio"]
    )
    assert 0 < results["score"]["value"] <= 1
