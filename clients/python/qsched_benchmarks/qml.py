"""QML Kernel: a ZZ feature map U(x) (qiskit's zz_feature_map, 2 repetitions) on num_qubits with
random features x (seeded), followed by U(x)† (a barrier in between so compilers keep both halves).
Ideally the state returns to |0…0>. accuracy_score = P(0…0), binomial uncertainty; score = accuracy."""

from __future__ import annotations

import numpy as np

from qsched_benchmarks.core import Benchmark, Built, binomial, needs_qubits, score_value
from qsched_benchmarks.schema import MAX_QUBITS, SHOTS, integer, obj

SEED = 0


class QMLKernel(Benchmark):
    name = "QML Kernel"
    schema = obj(
        name,
        name,
        {"num_qubits": integer(minimum=2, maximum=MAX_QUBITS), "shots": SHOTS},
        required=("num_qubits",),
    )

    def build(self, params, device) -> Built:
        from qiskit import QuantumCircuit
        from qiskit.circuit.library import zz_feature_map

        n = params["num_qubits"]
        needs_qubits(device, n, self.name)
        feature_map = zz_feature_map(n, reps=2)
        x = np.random.default_rng(SEED).uniform(0, 2 * np.pi, size=feature_map.num_parameters)
        bound = feature_map.assign_parameters(x).decompose()
        qc = QuantumCircuit(n, n, name=f"qml_kernel{n}")
        qc.compose(bound, inplace=True)
        qc.barrier()
        qc.compose(bound.inverse(), inplace=True)
        qc.measure(range(n), range(n))
        return Built([qc], params["shots"], {"num_qubits": n})

    def score(self, params, data, counts, context) -> dict:
        zeros = "0" * data["num_qubits"]
        total = sum(counts[0].values())
        p, se = binomial(counts[0].get(zeros, 0), total)
        value = score_value(p, se)
        return {"accuracy_score": value, "score": value}
