"""Mirror circuits: num_layers random layers (a random single-qubit Clifford on every qubit, then
two-qubit gates on a random matching of the device's coupling graph, each edge taken with probability
two_qubit_gate_prob), followed by their exact mirror image (the inverse), then X on a random subset of
qubits: the ideal outcome is that bitstring. Layers are separated by barriers so compilers cannot
cancel the mirror. success_probability = Σ counts[expected] / Σ shots over all circuits (pooled,
binomial standard error); polarization = max(0, (s - 2^-w)/(1 - 2^-w)) with the error scaled alike;
binary_success = polarization ≥ 1/e; score = polarization."""

from __future__ import annotations

import math

import numpy as np

from qsched_benchmarks.core import Benchmark, Built, binomial, connected_subset, score_value
from qsched_benchmarks.schema import MAX_QUBITS, SHOTS, integer, number, obj

CLIFFORDS_1Q = ("id", "x", "y", "z", "h", "s", "sdg", "sx", "sxdg")


class MirrorCircuits(Benchmark):
    name = "Mirror Circuits"
    schema = obj(
        name,
        name,
        {
            "width": integer(minimum=2, maximum=MAX_QUBITS),
            "num_layers": integer(3, 1, 500),
            "two_qubit_gate_prob": number(0.5, 0.0, 1.0),
            "two_qubit_gate_name": {"type": "string", "default": "CNOT", "enum": ["CNOT", "CZ"]},
            "shots": SHOTS,
            "num_circuits": integer(10, 1, 1000),
            "seed": integer(minimum=0),
        },
    )

    def build(self, params, device) -> Built:
        from qiskit import QuantumCircuit

        width = params.get("width") or device.qubits
        seed = params.get("seed")
        if seed is None:  # upstream: random circuits; the drawn seed is kept so the run is reproducible
            seed = int(np.random.default_rng().integers(0, 2**31))
        rng = np.random.default_rng(seed)
        _, edges = connected_subset(device, width)
        gate = "cx" if params["two_qubit_gate_name"] == "CNOT" else "cz"
        circuits = []
        expected = []
        for index in range(params["num_circuits"]):
            forward = QuantumCircuit(width)
            for _ in range(params["num_layers"]):
                for q in range(width):
                    name = CLIFFORDS_1Q[rng.integers(len(CLIFFORDS_1Q))]
                    getattr(forward, name)(q)
                forward.barrier()
                used: set[int] = set()
                for e in rng.permutation(len(edges)):
                    a, b = edges[int(e)]
                    if a in used or b in used or rng.random() >= params["two_qubit_gate_prob"]:
                        continue
                    used.update((a, b))
                    if rng.random() < 0.5:
                        a, b = b, a
                    getattr(forward, gate)(a, b)
                forward.barrier()
            qc = QuantumCircuit(width, width, name=f"mirror{index}")
            qc.compose(forward, inplace=True)
            qc.compose(forward.inverse(), inplace=True)
            target = [int(v) for v in rng.integers(0, 2, size=width)]
            flips = [q for q in range(width) if target[q]]
            if flips:
                qc.x(flips)
            qc.measure(range(width), range(width))
            circuits.append(qc)
            expected.append("".join(str(target[q]) for q in reversed(range(width))))
        return Built(circuits, params["shots"], {"expected": expected, "width": width, "seed": seed})

    def score(self, params, data, counts, context) -> dict:
        width = data["width"]
        hits = sum(c.get(e, 0) for c, e in zip(counts, data["expected"], strict=True))
        total = sum(sum(c.values()) for c in counts)
        s, se = binomial(hits, total)
        floor = 2.0**-width
        polarization = max(0.0, (s - floor) / (1 - floor))
        pol = score_value(polarization, se / (1 - floor))
        return {
            "success_probability": score_value(s, se),
            "polarization": pol,
            "binary_success": polarization >= 1 / math.e,
            "score": pol,
        }
