"""IonQ's `ionq.circuit.v1` programs in the `qis` gateset, simulated for the test doubles of IonQ
(tests/gateway/fake_ionq.py) and of Azure Quantum's IonQ targets (tests/support/azure_double.py).

The gate names come from the gateway's one table (`qsched_gateway.providers.ionq.GATES`), read
backwards; the test that pins those names to IonQ's documentation is
tests/gateway/test_ionq.py::test_qis_gate_names_are_ionqs."""

from __future__ import annotations

from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector

from qsched_gateway.providers.ionq import GATES

# IonQ qis gate -> qiskit gate (controls are added from the program's "controls").
QISKIT_GATE = {qis: name for name, (qis, controls, _) in GATES.items() if not controls}


class UnsupportedProgram(ValueError):
    """A program the double cannot run (another gateset, an unknown gate)."""


def simulate(program: dict) -> dict[str, float]:
    """Outcome probabilities keyed by the integer outcome (qubit 0 = least significant bit)."""
    if program.get("gateset", "qis") != "qis":
        raise UnsupportedProgram(f"gateset {program.get('gateset')!r} is not supported here")
    qc = QuantumCircuit(int(program["qubits"]))
    for gate in program["circuit"]:
        name = QISKIT_GATE.get(gate.get("gate", ""))
        if name is None:
            raise UnsupportedProgram(f"unknown gate {gate.get('gate')!r}")
        controls = gate.get("controls", [])
        if controls:
            name = {1: "c", 2: "cc"}[len(controls)] + name
        args = [gate["rotation"]] if "rotation" in gate else []
        getattr(qc, name)(*args, *controls, *gate["targets"])
    probabilities = Statevector(qc).probabilities()
    return {str(i): float(p) for i, p in enumerate(probabilities) if p > 1e-12}
