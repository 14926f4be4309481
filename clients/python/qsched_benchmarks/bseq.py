"""BSEQ (Bell state effective qubits): edge-colour the device's coupling graph; for each colour one
circuit per measurement setting (ZZ, ZX, XZ, XX) prepares a Bell-type state on every edge of that
colour at once. Per edge, CHSH = <ZZ> + <ZX> - <XZ> + <XX> from the marginal two-bit parities; an edge
passes when CHSH > 2. largest_connected_size = qubits in the largest connected component of passing
edges; fraction_connected = that / number of device qubits; score = largest_connected_size."""

from __future__ import annotations

import math

from qsched_benchmarks.core import Benchmark, Built, score_value
from qsched_benchmarks.errors import FailedPrecondition
from qsched_benchmarks.schema import MAX_QUBITS, SHOTS, integer, obj

SETTINGS = ("ZZ", "ZX", "XZ", "XX")
SIGNS = {"ZZ": 1, "ZX": 1, "XZ": -1, "XX": 1}
MAX_ALL_TO_ALL = 8  # a complete graph grows as n²: above this, use a device with a coupling map


def edge_colouring(edges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    colours: list[list[tuple[int, int]]] = []
    busy: list[set[int]] = []
    for a, b in edges:
        for colour, used in enumerate(busy):
            if a not in used and b not in used:
                colours[colour].append((a, b))
                used.update((a, b))
                break
        else:
            colours.append([(a, b)])
            busy.append({a, b})
    return colours


def largest_component(nodes: int, edges: list[tuple[int, int]]) -> int:
    parent = list(range(nodes))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    sizes: dict[int, int] = {}
    touched = {q for e in edges for q in e}
    for q in touched:
        sizes[find(q)] = sizes.get(find(q), 0) + 1
    return max(sizes.values(), default=0)


class BSEQ(Benchmark):
    name = "BSEQ"
    schema = obj(name, name, {"shots": SHOTS, "max_colors": integer(minimum=1, maximum=MAX_QUBITS)})

    def build(self, params, device) -> Built:
        from qiskit import QuantumCircuit

        if not device.coupling and device.qubits > MAX_ALL_TO_ALL:
            raise FailedPrecondition(
                "DEVICE_UNSUITABLE",
                f"BSEQ on all-to-all {device.name} ({device.qubits} qubits) needs "
                f"{device.qubits * (device.qubits - 1) // 2} edges; use a device with a coupling map "
                f"(e.g. local:fake_manila) or at most {MAX_ALL_TO_ALL} qubits",
                device=device.name,
            )
        colours = edge_colouring(device.edges())
        if params.get("max_colors"):
            colours = colours[: params["max_colors"]]
        circuits = []
        for index, edges in enumerate(colours):
            for setting in SETTINGS:
                qc = QuantumCircuit(device.qubits, 2 * len(edges), name=f"bseq_c{index}_{setting}")
                for a, b in edges:
                    qc.h(a)
                    qc.cx(a, b)
                    qc.ry(-math.pi / 4, a)  # rotate qubit a so the four settings reach 2√2
                qc.barrier()
                for k, (a, b) in enumerate(edges):
                    if setting[0] == "X":
                        qc.h(a)
                    if setting[1] == "X":
                        qc.h(b)
                    qc.measure(a, 2 * k)
                    qc.measure(b, 2 * k + 1)
                circuits.append(qc)
        return Built(
            circuits,
            params["shots"],
            {"colours": [[list(e) for e in edges] for edges in colours], "num_nodes": device.qubits},
        )

    def score(self, params, data, counts, context) -> dict:
        passing = []
        chsh_values = {}
        for index, edges in enumerate(data["colours"]):
            for k, (a, b) in enumerate(edges):
                chsh = 0.0
                for s, setting in enumerate(SETTINGS):
                    observed = counts[4 * index + s]
                    total = sum(observed.values()) or 1
                    parity = 0
                    for key, value in observed.items():
                        bit_a = key[-1 - 2 * k] == "1"
                        bit_b = key[-2 - 2 * k] == "1"
                        parity += value if bit_a == bit_b else -value
                    chsh += SIGNS[setting] * parity / total
                chsh_values[f"{a}-{b}"] = chsh
                if chsh > 2:
                    passing.append((a, b))
        lcs = largest_component(data["num_nodes"], passing)
        return {
            "largest_connected_size": lcs,
            "fraction_connected": lcs / data["num_nodes"],
            "chsh_per_edge": chsh_values,
            "score": score_value(lcs, None),
        }
