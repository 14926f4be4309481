"""Resource counts of logical circuits, as metriq-gym's `job estimate` reports them (but barriers,
delays and other directives are not counted as gates)."""

from __future__ import annotations

from dataclasses import dataclass

_DIRECTIVES = {"barrier", "delay", "snapshot", "save_statevector", "save_counts"}


@dataclass
class CircuitCounts:
    qubits: int
    depth: int
    one_qubit: int
    two_qubit: int
    multi_qubit: int
    measurements: int
    resets: int
    shots: int
    benchmark: str = ""

    @property
    def hqc(self) -> float:
        """Quantinuum HQC: 5 + shots·(N1q + 10·N2q + 5·(Nmeas + Nreset + qubits))/5000."""
        weight = self.one_qubit + 10 * self.two_qubit + 5 * (self.measurements + self.resets + self.qubits)
        return 5 + self.shots * weight / 5000


def _flatten(circuit):
    """Decompose gates outside qiskit's standard library (composite gates such as QFTGate) until
    only standard gates remain, so counts mean the same for every benchmark."""
    from qiskit.circuit.library import get_standard_gate_name_mapping

    standard = set(get_standard_gate_name_mapping()) | _DIRECTIVES | {"measure", "reset"}
    for _ in range(8):
        custom = {inst.operation.name for inst in circuit.data if inst.operation.name not in standard}
        if not custom:
            break
        circuit = circuit.decompose(gates_to_decompose=list(custom))
    return circuit


def count(circuit, shots: int, benchmark: str = "") -> CircuitCounts:
    circuit = _flatten(circuit)
    one = two = multi = meas = resets = 0
    for inst in circuit.data:
        name = inst.operation.name
        if name in _DIRECTIVES:
            continue
        if name == "measure":
            meas += 1
        elif name == "reset":
            resets += 1
        elif len(inst.qubits) == 1:
            one += 1
        elif len(inst.qubits) == 2:
            two += 1
        else:
            multi += 1
    depth = circuit.depth(filter_function=lambda inst: inst.operation.name not in _DIRECTIVES)
    return CircuitCounts(circuit.num_qubits, depth, one, two, multi, meas, resets, shots, benchmark)


def two_qubit_gate_count(circuit) -> int:
    return sum(1 for inst in circuit.data if len(inst.qubits) == 2 and inst.operation.name not in _DIRECTIVES)
