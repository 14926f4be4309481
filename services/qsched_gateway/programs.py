"""Programs in: OpenQASM 2, OpenQASM 3 (qiskit or Braket dialect) and QPY, all to qiskit circuits."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

from qsched_gateway.errors import invalid_program

_HEADER = re.compile(r"^\s*OPENQASM\s+(\d+)(?:\.\d+)?\s*;", re.MULTILINE)
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
# Braket's built-in OpenQASM 3 gate names -> the stdgates.inc names qiskit knows.
_BRAKET_GATES = {
    "cnot": "cx",
    "ccnot": "ccx",
    "i": "id",
    "phaseshift": "p",
    "cphaseshift": "cp",
    "si": "sdg",
    "ti": "tdg",
    "v": "sx",
    "vi": "sxdg",
}
_BRAKET_GATE_RE = re.compile(r"(^|;|\{|\})(\s*)(" + "|".join(_BRAKET_GATES) + r")(?=[\s(])", re.MULTILINE)


def qasm_version(source: str) -> int:
    match = _HEADER.search(_COMMENTS.sub("", source))
    return int(match.group(1)) if match else 2


def braket_to_qiskit_dialect(source: str) -> str:
    """Braket's OpenQASM 3 dialect (built-in gates, no include, pragmas) -> qiskit's."""
    lines = [line for line in source.splitlines() if not line.strip().startswith("#pragma")]
    text = "\n".join(lines)
    text = _BRAKET_GATE_RE.sub(lambda m: m.group(1) + m.group(2) + _BRAKET_GATES[m.group(3)], text)
    if "stdgates.inc" not in text:
        text = _HEADER.sub(lambda m: m.group(0) + '\ninclude "stdgates.inc";', text, count=1)
    return text


def parse_qasm(source: str, index: int = 0):
    import qiskit.qasm2
    import qiskit.qasm3

    version = qasm_version(source)
    try:
        if version == 2:
            return qiskit.qasm2.loads(
                source, custom_instructions=qiskit.qasm2.LEGACY_CUSTOM_INSTRUCTIONS, strict=False
            )
        try:
            return qiskit.qasm3.loads(source)
        except Exception:
            return qiskit.qasm3.loads(braket_to_qiskit_dialect(source))
    except Exception as exc:
        raise invalid_program(
            f"circuit {index}: cannot parse OpenQASM {version}: {exc}", index=index
        ) from exc


def load_qpy(data: bytes, index: int = 0) -> list:
    from qiskit import qpy

    try:
        return list(qpy.load(io.BytesIO(data)))
    except Exception as exc:
        raise invalid_program(f"QPY entry {index}: cannot load: {exc}", index=index) from exc


def load_circuits(qasm: Sequence[str], qpy_blobs: Sequence[bytes]) -> list:
    circuits = [parse_qasm(source, i) for i, source in enumerate(qasm)]
    for i, blob in enumerate(qpy_blobs):
        circuits.extend(load_qpy(blob, i))
    if not circuits:
        raise invalid_program("no circuits given")
    for i, circuit in enumerate(circuits):
        if circuit.num_clbits == 0 or not any(inst.operation.name == "measure" for inst in circuit.data):
            raise invalid_program(f"circuit {i} measures nothing", index=i)
    return circuits


def dump_qpy(circuits: Sequence) -> bytes:
    from qiskit import qpy

    buffer = io.BytesIO()
    qpy.dump(list(circuits), buffer)
    return buffer.getvalue()
