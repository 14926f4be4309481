"""EPLG (error per layered gate, qiskit-experiments' LayerFidelity): config schema, the seeded qubit
chain, the sub-chain metric, and scoring through the gateway on an ideal simulator (EPLG ≈ 0) and a
noisy fake backend (clearly above it). Small configs: few lengths, two samples, a 4-5 qubit chain."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import qiskit_experiments  # noqa: F401  (imported in the main thread, like qiskit: see conftest)

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched_benchmarks import eplg
from qsched_benchmarks import registry as benchmarks
from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.errors import FailedPrecondition, InvalidArgument
from tests.gateway.conftest import error_reason, watch_all

pytestmark = pytest.mark.timeout(180)

SMALL = {
    "benchmark_name": "EPLG",
    "num_qubits_in_chain": 4,
    "lengths": [1, 4, 12],
    "num_samples": 2,
    "shots": 300,
    "seed": 7,
}
# An H-shaped 7-qubit graph (fake_lagos' coupling map): its longest simple path has 5 qubits.
H_GRAPH = DeviceInfo("test", "h7", 7, coupling=[(0, 1), (1, 2), (1, 3), (3, 5), (4, 5), (5, 6)])


def test_schema_defaults_and_errors_name_the_key():
    _, params = benchmarks.validate({"benchmark_name": "EPLG", "num_qubits_in_chain": 5})
    assert params["lengths"] == [2, 4, 8, 16] and params["num_samples"] == 3 and params["shots"] == 100
    assert params["seed"] == 12345 and params["two_qubit_gate"] == "cz"
    assert params["one_qubit_basis_gates"] == ["rz", "rx", "x"]
    assert params["decompose_clifford_ops"] is False and params["constrain_rb_offset_b"] is False
    cases = [
        ({**SMALL, "num_qubit_in_chain": 4}, "unknown key 'num_qubit_in_chain'"),
        ({"benchmark_name": "EPLG"}, "required key 'num_qubits_in_chain' is missing"),
        ({**SMALL, "num_qubits_in_chain": 3}, "'num_qubits_in_chain' = 3 violates minimum 4"),
        ({**SMALL, "lengths": [2, 2]}, "'lengths' must not repeat"),
        ({**SMALL, "lengths": [0]}, "'lengths[0]'"),
        ({**SMALL, "two_qubit_gate": "toffoli"}, "'two_qubit_gate' must be one of"),
    ]
    for config, needle in cases:
        with pytest.raises(InvalidArgument) as info:
            benchmarks.validate(config)
        assert needle in info.value.message and info.value.reason == "INVALID_CONFIG", info.value.message


def test_without_qiskit_experiments_eplg_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(benchmarks, "eplg_available", lambda: False)
    with pytest.raises(InvalidArgument) as info:
        benchmarks.validate(SMALL)
    assert info.value.reason == "UNKNOWN_BENCHMARK" and "qiskit-experiments" in info.value.message


def test_the_chain_is_a_seeded_path_of_the_coupling_graph():
    edges = {frozenset(e) for e in H_GRAPH.coupling}
    chains = {seed: eplg.random_chain(H_GRAPH, 5, seed) for seed in range(12)}
    for chain in chains.values():
        assert len(set(chain)) == 5
        assert all(frozenset(pair) in edges for pair in itertools.pairwise(chain))
    assert eplg.random_chain(H_GRAPH, 5, 3) == chains[3]  # reproducible
    assert len({tuple(c) for c in chains.values()}) > 1  # and the seed matters
    with pytest.raises(FailedPrecondition) as info:
        eplg.random_chain(H_GRAPH, 6, 0)  # no 6-qubit path in an H
    assert info.value.reason == "DEVICE_UNSUITABLE"
    all_to_all = DeviceInfo("test", "any", 30)
    assert sorted(eplg.random_chain(all_to_all, 5, 1)) == [0, 1, 2, 3, 4]  # stays 5 qubits wide
    assert eplg.chain_layers([4, 2, 7, 1, 0]) == [[(4, 2), (7, 1)], [(2, 7), (1, 0)]]


def test_sub_chain_eplg_follows_metriq_gyms_definition():
    # P = [pf(q0)², pf(e0), …, pf(e_{n-2}), pf(q_{n-1})²]; all entries p: F(L) = p^L, EPLG = 1 - p^(L/(L-1))
    p = 0.97
    lengths, values = eplg.chain_eplgs([p] * 7)  # a 6-qubit chain
    assert lengths == [4, 6]
    assert values == pytest.approx([1 - p ** (4 / 3), 1 - p ** (6 / 5)])
    # the best window wins: a bad edge at one end is left out of the length-4 window
    lengths, values = eplg.chain_eplgs([1.0, 0.5, 0.99, 0.99, 0.99, 1.0])
    assert values[0] == pytest.approx(1 - (math.sqrt(0.5) * 0.99**3) ** (1 / 3))
    picked = eplg.at_reference_lengths([4, 6, 12], [0.1, 0.2, 0.3])
    assert picked == {"eplg_10": 0.3, "eplg_20": 0.3, "eplg_50": 0.3, "eplg_100": 0.3}
    picked = eplg.at_reference_lengths([8, 12, 20], [0.1, 0.2, 0.3])
    assert picked["eplg_10"] == 0.1  # 8 and 12 are as near: the shorter
    assert eplg.at_reference_lengths([], []) == dict.fromkeys(picked)


def test_building_is_reproducible_and_the_circuits_sit_on_the_chain():
    bench, params = benchmarks.validate(SMALL)
    first, second = bench.build(params, H_GRAPH), bench.build(params, H_GRAPH)
    assert [str(c) for c in first.circuits] == [str(c) for c in second.circuits]
    assert first.data == second.data
    chain = first.data["qubit_chain"]
    assert len(first.circuits) == 2 * 2 * 3  # samples x two layers x lengths
    used = {
        c.find_bit(q).index
        for c in first.circuits
        for i in c.data
        if i.operation.name != "barrier"
        for q in i.qubits
    }
    assert used <= set(chain)
    other = bench.build({**params, "seed": 8}, H_GRAPH)
    assert [str(c) for c in other.circuits] != [str(c) for c in first.circuits]
    decomposed = bench.build({**params, "decompose_clifford_ops": True}, H_GRAPH)
    names = {i.operation.name for c in decomposed.circuits for i in c.data}
    assert names <= {"rz", "rx", "x", "cz", "barrier", "measure"}
    assert [c.metadata for c in decomposed.circuits] == [c.metadata for c in first.circuits]


async def _eplg_record(stub, device: str, config: dict) -> dict:
    workload = pb.Workload(benchmark_config_json=json.dumps(config))
    submitted = await stub.Submit(pb.SubmitRequest(device=device, workload=workload, job_id="JOB-E"))
    statuses = await watch_all(stub, submission_id=submitted.submission_id)
    assert statuses[-1].state == pb.TASK_STATE_COMPLETED, statuses[-1].message
    fetched = await stub.FetchResult(pb.FetchResultRequest(submission_id=submitted.submission_id))
    scoring = json.loads(fetched.scoring_json)
    assert scoring["parts"][0]["data"]["qubit_chain"]  # what replay re-scores from
    return json.loads(fetched.benchmark_results_json)


async def test_eplg_is_near_zero_ideal_and_higher_on_a_noisy_fake_backend(gateway):
    stub, _ = gateway
    ideal = await _eplg_record(stub, "local:aer_simulator", SMALL)
    assert ideal["job_type"] == "EPLG" and "score" not in ideal["results"]  # as metriq-gym: no score
    results = ideal["results"]
    assert results["chain_lengths"] == [4] and len(results["chain_eplgs"]) == 1
    assert set(results) >= {"eplg_10", "eplg_20", "eplg_50", "eplg_100", "layer_fidelity", "eplg"}
    assert 0 <= results["chain_eplgs"][0] < 1e-3 and results["layer_fidelity"] > 0.995
    assert sorted(ideal["circuit_metadata"]["qubit_chain"]) == [0, 1, 2, 3]

    noisy = await _eplg_record(stub, "local:fake_lagos", {**SMALL, "num_qubits_in_chain": 5})
    chain = noisy["circuit_metadata"]["qubit_chain"]
    lagos = {frozenset(e) for e in H_GRAPH.coupling}
    assert all(frozenset(pair) in lagos for pair in itertools.pairwise(chain))
    eplgs = noisy["results"]["chain_eplgs"]
    assert noisy["results"]["chain_lengths"] == [4]
    assert eplgs[0] > results["chain_eplgs"][0] + 0.003, noisy["results"]
    assert noisy["results"]["eplg"] > 0.003 and noisy["results"]["layer_fidelity"] < 0.99
    assert noisy["circuit_metadata"]["transpiled_two_qubit_gate_counts"]


async def test_a_chain_longer_than_the_device_allows_is_refused(gateway):
    stub, _ = gateway
    config = {**SMALL, "num_qubits_in_chain": 6}
    with pytest.raises(Exception) as info:
        await stub.Estimate(
            pb.EstimateRequest(
                device="local:fake_lagos", workload=pb.Workload(benchmark_config_json=json.dumps(config))
            )
        )
    assert error_reason(info.value) == "DEVICE_UNSUITABLE" and "6 connected qubits" in info.value.details()
