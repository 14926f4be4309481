"""CLOPS (instantiated mode): num_circuits random circuits of num_layers layers on num_qubits qubits
(a random SU(2) rotation on every qubit, then the two-qubit gate on a random matching of the coupling
graph), seeded. clops_score = num_circuits·num_layers·shots / Σ execution time (layers per second);
steady_state_clops needs IBM execution spans and is null here. score = clops_score."""

from __future__ import annotations

import numpy as np

from qsched_benchmarks.core import Benchmark, Built, connected_subset, score_value
from qsched_benchmarks.errors import invalid_config
from qsched_benchmarks.schema import MAX_QUBITS, SHOTS, integer, obj


class CLOPS(Benchmark):
    name = "CLOPS"
    schema = obj(
        name,
        name,
        {
            "num_qubits": integer(10, 1, MAX_QUBITS),
            "num_layers": integer(100, 1, 10_000),
            "num_circuits": integer(100, 1, 10_000),
            "shots": SHOTS,
            "seed": integer(12345),
            "two_qubit_gate": {"type": "string", "default": "cz", "enum": ["cz", "cx", "ecr"]},
            "mode": {
                "type": "string",
                "default": "instantiated",
                "enum": ["instantiated", "parameterized", "twirled"],
            },
            "use_session": {"type": "boolean", "default": False},
        },
    )

    def check(self, params) -> None:
        if params.get("mode", "instantiated") != "instantiated":
            raise invalid_config(
                f"CLOPS: mode {params['mode']!r} needs IBM Runtime sessions; "
                "this gateway runs 'instantiated'",
                key="mode",
            )

    def build(self, params, device) -> Built:
        from qiskit import QuantumCircuit

        n = params["num_qubits"]
        _, edges = connected_subset(device, n)
        rng = np.random.default_rng(params["seed"])
        circuits = []
        for index in range(params["num_circuits"]):
            qc = QuantumCircuit(n, n, name=f"clops{index}")
            for _ in range(params["num_layers"]):
                for q in range(n):
                    theta, phi, lam = rng.uniform(0, 2 * np.pi, size=3)
                    qc.u(float(theta), float(phi), float(lam), q)
                used: set[int] = set()
                for e in rng.permutation(len(edges)):
                    a, b = edges[int(e)]
                    if a in used or b in used:
                        continue
                    used.update((a, b))
                    getattr(qc, params["two_qubit_gate"])(a, b)
                qc.barrier()
            qc.measure(range(n), range(n))
            circuits.append(qc)
        return Built(circuits, params["shots"], {})

    def score(self, params, data, counts, context) -> dict:
        work = params["num_circuits"] * params["num_layers"] * params["shots"]
        clops = work / context.execution_seconds if context.execution_seconds > 0 else None
        value = score_value(clops, None)
        return {"clops_score": value, "steady_state_clops": None, "score": value}
