"""EPLG, error per layered gate (McKay et al., arXiv:2311.05933), with metriq-gym's metric definition.

Dispatch: a seeded random chain of num_qubits_in_chain physical qubits, i.e. a simple path in the device's
coupling graph (on an all-to-all device, a seeded permutation of qubits 0..n-1, so the circuits stay n
wide); its edges (q0,q1), (q1,q2), … split into two disjoint layers (even and odd edges); qiskit-experiments'
LayerFidelity builds the direct-RB circuits of both layers for every length and sample (seeded, so the
same config on the same device always gives the same circuits). The circuits are on physical qubits
(width = largest chain qubit + 1) and the local provider keeps that layout.

Scoring: the LayerFidelity analysis fits one RB decay per 1q/2q subsystem of each layer and reports
its process fidelity. Along the chain the sequence of fidelities is
P = [pf(q0)², pf(e0), pf(e1), …, pf(e_{n-2}), pf(q_{n-1})²] (a fit that failed counts 0). For every
sub-chain length L = 4, 6, … ≤ n, the chain fidelity is the best window of L+1 consecutive entries with
half weight at both ends, F(L) = max_s √P[s]·ΠP[s+1..s+L-1]·√P[s+L], and EPLG(L) = 1 - F(L)^(1/(L-1))
(`chain_lengths`, `chain_eplgs`). `eplg_10`, `eplg_20`, `eplg_50`, `eplg_100` are EPLG at those lengths, or
at the nearest measured one (the shorter on a tie). As in metriq-gym there is no `score` (lower is
better). Also reported: `layer_fidelity` (LF, the product of the two layers' fidelities, from the
analysis) and `eplg` = 1 - LF^(1/(n-1)) for the whole chain."""

from __future__ import annotations

import itertools
import math
import random

from qsched_benchmarks.core import Benchmark, Built, needs_qubits
from qsched_benchmarks.errors import FailedPrecondition, invalid_config
from qsched_benchmarks.schema import MAX_QUBITS, MAX_SHOTS, integer, obj

TWO_QUBIT_GATES = ["cz", "cx", "ecr", "cy", "swap", "iswap", "dcx"]  # two-qubit Clifford standard gates
ONE_QUBIT_GATES = ["rz", "rx", "ry", "x", "y", "z", "sx", "sxdg", "s", "sdg", "h", "u", "u3", "p"]
REFERENCE_LENGTHS = (10, 20, 50, 100)
OFFSET_HALF_WIDTH = 0.05  # constrain_rb_offset_b: b is fitted within 2^-k ± this


def available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("qiskit_experiments") is not None
    except (ImportError, ValueError):
        return False


def random_chain(device, length: int, seed: int, attempts: int = 64) -> list[int]:
    """A simple path of `length` qubits in the device's coupling graph, chosen with random.Random(seed):
    depth-first search from a random qubit, neighbours in random order, with a bounded number of steps
    per start. All-to-all devices: a random order of qubits 0..length-1."""
    rng = random.Random(seed)
    if not device.coupling:
        chain = list(range(length))
        rng.shuffle(chain)
        return chain
    neighbours: dict[int, list[int]] = {}
    for a, b in device.edges():
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    nodes = sorted(neighbours)
    budget = 20 * length * length
    for _ in range(attempts):
        start = rng.choice(nodes)
        path = [start]
        on_path = {start}
        options = [rng.sample(neighbours[start], len(neighbours[start]))]
        steps = 0
        while path and len(path) < length and steps < budget:
            steps += 1
            if not options[-1]:
                on_path.discard(path.pop())
                options.pop()
                continue
            nxt = options[-1].pop()
            if nxt in on_path:
                continue
            path.append(nxt)
            on_path.add(nxt)
            options.append(rng.sample(neighbours[nxt], len(neighbours[nxt])))
        if len(path) == length:
            return path
    raise FailedPrecondition(
        "DEVICE_UNSUITABLE",
        f"EPLG: found no chain of {length} connected qubits on {device.name}",
        device=device.name,
    )


def chain_layers(chain: list[int]) -> list[list[tuple[int, int]]]:
    edges = list(itertools.pairwise(chain))
    return [edges[0::2], edges[1::2]]


def chain_eplgs(pfs: list[float]) -> tuple[list[int], list[float]]:
    """(sub-chain lengths, EPLG per length) from the fidelity sequence P along the chain (module doc)."""
    lengths = list(range(4, len(pfs), 2))
    eplgs = []
    for length in lengths:
        best = max(
            math.sqrt(pfs[s]) * math.prod(pfs[s + 1 : s + length]) * math.sqrt(pfs[s + length])
            for s in range(len(pfs) - length)
        )
        eplgs.append(1.0 - best ** (1.0 / (length - 1)))
    return lengths, eplgs


def at_reference_lengths(lengths: list[int], eplgs: list[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for target in REFERENCE_LENGTHS:
        if not lengths:
            out[f"eplg_{target}"] = None
            continue
        nearest = min(range(len(lengths)), key=lambda i: (abs(lengths[i] - target), lengths[i]))
        out[f"eplg_{target}"] = eplgs[nearest]
    return out


def _experiment(data: dict):
    from qiskit_experiments.library.randomized_benchmarking import LayerFidelity

    layers = [[tuple(edge) for edge in layer] for layer in data["two_qubit_layers"]]
    experiment = LayerFidelity(
        physical_qubits=data["qubit_chain"],
        two_qubit_layers=[layer for layer in layers if layer],
        lengths=data["lengths"],
        num_samples=data["num_samples"],
        seed=data["seed"],
        two_qubit_gate=data["two_qubit_gate"],
        one_qubit_basis_gates=data["one_qubit_basis_gates"],
    )
    experiment.set_experiment_options(max_circuits=2 * data["num_samples"] * len(data["lengths"]))
    return experiment


def _value(result) -> float:
    """An analysis value (an uncertainties ufloat, a float or None for a failed fit) as a float."""
    if result is None:
        return 0.0
    value = float(getattr(result, "nominal_value", result))
    return 0.0 if math.isnan(value) else value


def _constrain_offsets(analysis) -> None:
    """constrain_rb_offset_b: bound every RB fit's offset b to 2^-k ± OFFSET_HALF_WIDTH (k = qubits
    of that fit), starting it at 2^-k: steadies fits whose lengths do not reach the decay's tail."""
    children = getattr(analysis, "component_analysis", None)
    if children is not None:
        for child in children():
            _constrain_offsets(child)
        return
    outcome = getattr(analysis.options, "outcome", None)
    if not outcome:
        return
    floor = 2.0 ** -len(outcome)
    analysis.set_options(
        bounds={"b": (max(0.0, floor - OFFSET_HALF_WIDTH), min(1.0, floor + OFFSET_HALF_WIDTH))},
        p0={"b": floor},
    )


def _no_figures(analysis) -> None:
    children = getattr(analysis, "component_analysis", None)
    if children is not None:
        for child in children():
            _no_figures(child)
    if hasattr(analysis.options, "plot"):
        analysis.set_options(plot=False)


class EPLG(Benchmark):
    name = "EPLG"
    schema = obj(
        name,
        name,
        {
            "num_qubits_in_chain": integer(minimum=4, maximum=MAX_QUBITS),
            "lengths": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "default": [2, 4, 8, 16],
            },
            "num_samples": integer(3, 1, 1_000),
            "shots": integer(100, 1, MAX_SHOTS),
            "seed": integer(12345),
            "two_qubit_gate": {"type": "string", "default": "cz", "enum": TWO_QUBIT_GATES},
            "one_qubit_basis_gates": {
                "type": "array",
                "items": {"type": "string", "enum": ONE_QUBIT_GATES},
                "minItems": 1,
                "default": ["rz", "rx", "x"],
            },
            "decompose_clifford_ops": {"type": "boolean", "default": False},
            "constrain_rb_offset_b": {"type": "boolean", "default": False},
        },
        required=("num_qubits_in_chain",),
    )

    def check(self, params) -> None:
        lengths = params.get("lengths") or []
        if len(set(lengths)) != len(lengths):
            raise invalid_config("EPLG: key 'lengths' must not repeat a length", key="lengths")
        if params.get("num_qubits_in_chain", 4) < 4:
            raise invalid_config("EPLG: num_qubits_in_chain must be at least 4", key="num_qubits_in_chain")

    def build(self, params, device) -> Built:
        n = params["num_qubits_in_chain"]
        needs_qubits(device, n, self.name)
        chain = random_chain(device, n, params["seed"])
        data = {
            "qubit_chain": chain,
            "two_qubit_layers": [[list(edge) for edge in layer] for layer in chain_layers(chain)],
            "lengths": sorted(params["lengths"]),
            "num_samples": params["num_samples"],
            "seed": params["seed"],
            "two_qubit_gate": params["two_qubit_gate"],
            "one_qubit_basis_gates": list(params["one_qubit_basis_gates"]),
            "shots": params["shots"],
        }
        circuits = _experiment(data).circuits()
        if params["decompose_clifford_ops"]:  # to the requested gates, for providers without Clifford ops
            from qiskit import transpile

            basis = [*data["one_qubit_basis_gates"], data["two_qubit_gate"]]
            decomposed = transpile(circuits, basis_gates=basis, optimization_level=0)
            for original, circuit in zip(circuits, decomposed, strict=True):
                circuit.metadata = original.metadata
            circuits = decomposed
        return Built(circuits, params["shots"], data)

    def score(self, params, data, counts, context) -> dict:
        from qiskit.result import Result
        from qiskit.result.models import ExperimentResult, ExperimentResultData
        from qiskit_experiments.framework import ExperimentData

        experiment = _experiment(data)
        analysis = experiment.analysis
        _no_figures(analysis)
        if params.get("constrain_rb_offset_b"):
            _constrain_offsets(analysis)
        circuits = experiment.circuits()  # for their metadata: which subsystem, sample and length
        if len(counts) != len(circuits):
            raise ValueError(f"EPLG expects counts of {len(circuits)} circuits, got {len(counts)}")
        results = []
        for index, (circuit, observed) in enumerate(zip(circuits, counts, strict=True)):
            width = circuit.num_clbits
            ordered = {hex(int(key, 2)): int(observed[key]) for key in sorted(observed)}
            results.append(
                ExperimentResult(
                    shots=sum(ordered.values()),
                    success=True,
                    data=ExperimentResultData(counts=ordered),
                    header={
                        "name": f"eplg{index}",
                        "metadata": circuit.metadata,
                        "memory_slots": width,
                        "creg_sizes": [["c", width]],
                    },
                )
            )
        result = Result(
            backend_name="qsched", backend_version="0", job_id="eplg", success=True, results=results
        )
        experiment_data = ExperimentData(experiment=experiment)
        experiment_data.auto_save = False
        experiment_data.add_data(result)
        analysis.run(experiment_data, replace_results=True)
        experiment_data.block_for_results()
        fidelity: dict[tuple[int, ...], float] = {}
        layer_fidelity = None
        table = experiment_data.analysis_results(dataframe=True)
        for name, value, qubits in zip(table["name"], table["value"], table["qubits"], strict=True):
            if name == "ProcessFidelity" and isinstance(qubits, tuple | list):
                fidelity[tuple(int(q) for q in qubits)] = _value(value)  # a failed fit counts 0
            elif name == "LF" and value is not None:
                layer_fidelity = _value(value)
        chain = data["qubit_chain"]
        sequence = [(chain[0],), *itertools.pairwise(chain), (chain[-1],)]
        pfs = [fidelity.get(qubits, 0.0) for qubits in sequence]
        pfs[0] **= 2
        pfs[-1] **= 2
        lengths, eplgs = chain_eplgs(pfs)
        whole = None
        if layer_fidelity is not None:
            whole = 1.0 - max(layer_fidelity, 0.0) ** (1.0 / (len(chain) - 1))
        return {
            "chain_lengths": lengths,
            "chain_eplgs": eplgs,
            **at_reference_lengths(lengths, eplgs),
            "layer_fidelity": layer_fidelity,
            "eplg": whole,
        }
