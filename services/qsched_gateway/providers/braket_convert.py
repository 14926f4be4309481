"""qiskit circuit -> Braket Circuit by gate mapping (Braket's OpenQASM 3 dialect differs from qiskit's,
so no text route). The circuit is first transpiled (optimization level 0, structure kept) to gates that
exist in both SDKs; barriers are dropped (Braket has none); measurements must come last on each qubit
(no mid-circuit measurement or reset)."""

from __future__ import annotations

from qsched_gateway.errors import invalid_program

# qiskit name -> (braket Circuit method, number of parameters)
GATES = {
    "id": ("i", 0),
    "x": ("x", 0),
    "y": ("y", 0),
    "z": ("z", 0),
    "h": ("h", 0),
    "s": ("s", 0),
    "sdg": ("si", 0),
    "t": ("t", 0),
    "tdg": ("ti", 0),
    "sx": ("v", 0),
    "sxdg": ("vi", 0),
    "rx": ("rx", 1),
    "ry": ("ry", 1),
    "rz": ("rz", 1),
    "p": ("phaseshift", 1),
    "cx": ("cnot", 0),
    "cy": ("cy", 0),
    "cz": ("cz", 0),
    "swap": ("swap", 0),
    "iswap": ("iswap", 0),
    "ecr": ("ecr", 0),
    "cp": ("cphaseshift", 1),
    "rxx": ("xx", 1),
    "ryy": ("yy", 1),
    "rzz": ("zz", 1),
    "ccx": ("ccnot", 0),
    "cswap": ("cswap", 0),
}
BASIS = sorted(GATES)


def to_braket(circuit):
    """-> (braket Circuit, measured qubits in measurement order, clbit of each measured qubit)."""
    from braket.circuits import Circuit
    from qiskit import transpile

    if any(
        inst.operation.name not in GATES and inst.operation.name not in {"measure", "barrier"}
        for inst in circuit.data
    ):
        circuit = transpile(circuit, basis_gates=BASIS, optimization_level=0)
    out = Circuit()
    measured: dict[int, int] = {}  # qubit -> clbit
    for inst in circuit.data:
        name = inst.operation.name
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if name == "barrier":
            continue
        if name == "measure":
            clbit = circuit.find_bit(inst.clbits[0]).index
            if qubits[0] in measured:
                raise invalid_program(
                    f"qubit {qubits[0]} is measured twice; Braket measures once, at the end"
                )
            measured[qubits[0]] = clbit
            continue
        if name not in GATES:
            raise invalid_program(f"gate {name!r} has no Braket equivalent")
        if measured.keys() & set(qubits):
            raise invalid_program(
                "Braket does not support gates after a measurement (mid-circuit measurement)"
            )
        method, nparams = GATES[name]
        params = [float(p) for p in inst.operation.params[:nparams]]
        getattr(out, method)(*qubits, *params)
    if not measured:
        raise invalid_program("the circuit measures nothing")
    for qubit in measured:
        if not any(qubit in ins.target for ins in out.instructions):
            out.i(qubit)  # Braket only knows qubits some instruction touches
    order = sorted(measured)
    out.measure(order)
    return out, order, [measured[q] for q in order]


def counts_to_qiskit(measurement_counts, measured_qubits, qubit_clbit: dict[int, int], num_clbits: int):
    """Braket counts (one character per measured qubit, in measured_qubits order) -> qiskit bitstrings
    (clbit 0 rightmost)."""
    out: dict[str, int] = {}
    for key, value in measurement_counts.items():
        bits = ["0"] * num_clbits
        for position, qubit in enumerate(measured_qubits):
            clbit = qubit_clbit.get(int(qubit))
            if clbit is not None:
                bits[num_clbits - 1 - clbit] = key[position]
        text = "".join(bits)
        out[text] = out.get(text, 0) + int(value)
    return out
