"""WIT, wormhole-inspired teleportation (Shapoval et al., Quantum 7, 1138 (2023), Fig. 4; coupling
g = π/2), with the gate sequence metriq-gym uses so the value is comparable: three Bell pairs
(0,5) (1,4) (2,3); three backward Trotter steps of the left scrambler on 0-2; the message inserted on
qubit 0 (reset for 6 qubits, swap with qubit 6 for 7); three forward steps; the RZZ(π/2) couplings
(1,4) (2,3); three forward steps on the right side 5-3; measure qubit 5.
expectation_value = count('1')/shots, uncertainty sqrt(p(1-p)/shots); score = expectation_value."""

from __future__ import annotations

import math

from qsched_benchmarks.core import Benchmark, Built, binomial, needs_qubits, score_value
from qsched_benchmarks.schema import SHOTS, integer, obj

FIELDS = (0.0566794, 0.01039906, 0.0632158)  # the per-qubit Z fields of the scrambler
HALF_PI = math.pi / 2


def _step(qc, qubits, sign: float, rx_first: bool) -> None:
    """One Trotter step: RX(±π/2) on each qubit, RZ(±field), RZZ(±π/2) along the chain; the RX layer
    comes first (rx_first) or last."""
    a, b, c = qubits
    if rx_first:
        for q in qubits:
            qc.rx(sign * HALF_PI, q)
    for q, h in zip(qubits, FIELDS, strict=True):
        qc.rz(sign * h, q)
    qc.rzz(sign * HALF_PI, a, b)
    qc.rzz(sign * HALF_PI, b, c)
    if not rx_first:
        for q in qubits:
            qc.rx(sign * HALF_PI, q)


def wit_circuit(num_qubits: int):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(num_qubits, 1, name=f"wit{num_qubits}")
    for left, right in ((0, 5), (1, 4), (2, 3)):
        qc.h(left)
        qc.cx(left, right)
    left = (0, 1, 2)
    for _ in range(3):
        _step(qc, left, -1.0, rx_first=True)
    if num_qubits == 6:
        qc.reset(0)
    else:
        qc.swap(0, 6)
    for _ in range(3):  # forward steps: RZ, RZZ, then RX
        _step(qc, left, 1.0, rx_first=False)
    qc.rzz(HALF_PI, 1, 4)
    qc.rzz(HALF_PI, 2, 3)
    for _ in range(3):
        _step(qc, (5, 4, 3), 1.0, rx_first=True)
    qc.measure(5, 0)
    return qc


class WIT(Benchmark):
    name = "WIT"
    schema = obj(name, name, {"shots": SHOTS, "num_qubits": integer(6, enum=[6, 7])})

    def build(self, params, device) -> Built:
        needs_qubits(device, params["num_qubits"], self.name)
        return Built([wit_circuit(params["num_qubits"])], params["shots"], {})

    def score(self, params, data, counts, context) -> dict:
        ones = sum(v for k, v in counts[0].items() if k.endswith("1"))
        total = sum(counts[0].values())
        p, se = binomial(ones, total)
        value = score_value(p, se)
        return {"expectation_value": value, "score": value}
