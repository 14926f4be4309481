"""Linear Ramp QAOA on weighted MaxCut. Graph: "1D" chain, "NL" the device's native layout (a
connected subset of its coupling graph) or "FC" fully connected, on num_qubits nodes with edge weights
drawn (seeded) from {0.1, 0.2, …, 1.0}. For p layers, layer i = 1..p uses gamma_i = (i/p)·delta_gamma
and beta_i = (1 - i/p)·delta_beta; each p runs `trials` times.
approx_ratio(p) = mean over trials of Σ count·cut / (max_cut·shots) (max_cut exact by enumeration up
to 22 nodes, else the best of a seeded greedy local search); random_approx_ratio = mean of
num_random_trials uniform samplers of `shots` samples each; confidence_pass(p) = one-sided Welch
t-test of the trial ratios against the random ones with p-value < 1 - confidence_level;
effective_approx_ratio(p) = max(0, (r - rand)/(1 - rand)); score = mean effective ratio."""

from __future__ import annotations

import numpy as np

from qsched_benchmarks.core import Benchmark, Built, connected_subset, needs_qubits, score_value
from qsched_benchmarks.errors import invalid_config
from qsched_benchmarks.schema import MAX_QUBITS, SHOTS, integer, number, obj

EXACT_LIMIT = 22


def _graph(params, device) -> list[tuple[int, int]]:
    n = params["num_qubits"]
    kind = params["graph_type"]
    if kind == "1D":
        needs_qubits(device, n, "Linear Ramp QAOA")
        return [(i, i + 1) for i in range(n - 1)]
    if kind == "FC":
        needs_qubits(device, n, "Linear Ramp QAOA")
        return [(a, b) for a in range(n) for b in range(a + 1, n)]
    return connected_subset(device, n)[1]


def cut_values(n: int, edges, weights, bitstrings: np.ndarray) -> np.ndarray:
    """Cut weight of each integer bitstring (bit i = node i)."""
    total = np.zeros(len(bitstrings))
    for (a, b), w in zip(edges, weights, strict=True):
        total += w * (((bitstrings >> a) ^ (bitstrings >> b)) & 1)
    return total


def max_cut(n: int, edges, weights, seed: int) -> float:
    if n <= EXACT_LIMIT:
        return float(cut_values(n, edges, weights, np.arange(2**n, dtype=np.int64)).max())
    rng = np.random.default_rng(seed)
    best = 0.0
    for _ in range(50):
        x = int(rng.integers(0, 2**n))
        improved = True
        current = float(cut_values(n, edges, weights, np.array([x]))[0])
        while improved:
            improved = False
            for i in range(n):
                y = x ^ (1 << i)
                value = float(cut_values(n, edges, weights, np.array([y]))[0])
                if value > current:
                    x, current, improved = y, value, True
        best = max(best, current)
    return best


class LinearRampQAOA(Benchmark):
    name = "Linear Ramp QAOA"
    schema = obj(
        name,
        name,
        {
            "graph_type": {"type": "string", "enum": ["1D", "NL", "FC"]},
            "num_qubits": integer(minimum=2, maximum=MAX_QUBITS),
            "qaoa_layers": {
                "type": "array",
                "items": {"type": "integer", "minimum": 3},
                "minItems": 1,
                "default": [3, 5, 7, 10, 15, 20],
            },
            "delta_beta": number(0.3, 0.0, 2.0),
            "delta_gamma": number(0.3, 0.0, 2.0),
            "shots": SHOTS,
            "trials": integer(3, 1, 1_000),
            "num_random_trials": integer(25, 10, 10_000),
            "confidence_level": number(0.995, 0.0, 1.0),
            "seed": integer(123),
        },
        required=("graph_type", "num_qubits"),
    )

    def check(self, params) -> None:
        if params.get("graph_type") == "NL" and params.get("num_qubits", 0) < 2:
            raise invalid_config("Linear Ramp QAOA: NL needs num_qubits ≥ 2", key="num_qubits")

    def build(self, params, device) -> Built:
        from qiskit import QuantumCircuit

        n = params["num_qubits"]
        edges = _graph(params, device)
        rng = np.random.default_rng(params["seed"])
        weights = [float(w) for w in rng.integers(1, 11, size=len(edges)) / 10]
        circuits = []
        for p in params["qaoa_layers"]:
            for trial in range(params["trials"]):
                qc = QuantumCircuit(n, n, name=f"lrqaoa_p{p}_t{trial}")
                qc.h(range(n))
                for i in range(1, p + 1):
                    gamma = i / p * params["delta_gamma"]
                    beta = (1 - i / p) * params["delta_beta"]
                    for (a, b), w in zip(edges, weights, strict=True):
                        qc.rzz(2 * gamma * w, a, b)
                    for q in range(n):
                        qc.rx(-2 * beta, q)  # mixer exp(-i·β·(-ΣX)): |+> is its ground state
                    qc.barrier()
                qc.measure(range(n), range(n))
                circuits.append(qc)
        best = max_cut(n, edges, weights, params["seed"])
        data = {"edges": [list(e) for e in edges], "weights": weights, "max_cut": best, "num_qubits": n}
        return Built(circuits, params["shots"], data)

    def score(self, params, data, counts, context) -> dict:
        from scipy import stats

        n = data["num_qubits"]
        edges = [tuple(e) for e in data["edges"]]
        weights = data["weights"]
        best = data["max_cut"]
        shots = params["shots"]

        def ratio(observed: dict[str, int]) -> float:
            # Sorted: a float sum depends on its order, and replay must reproduce the score exactly
            # whatever order the counts were stored in.
            items = sorted(observed.items())
            keys = np.array([int(k, 2) for k, _ in items], dtype=np.int64)
            values = np.array([v for _, v in items], dtype=float)
            return float((cut_values(n, edges, weights, keys) * values).sum() / (best * values.sum()))

        rng = np.random.default_rng(params["seed"] + 1)
        randoms = [
            float(
                cut_values(n, edges, weights, rng.integers(0, 2**n, size=shots, dtype=np.int64)).mean() / best
            )
            for _ in range(params["num_random_trials"])
        ]
        rand = float(np.mean(randoms))
        approx, passes, effective = [], [], []
        trials = params["trials"]
        for index, _p in enumerate(params["qaoa_layers"]):
            values = [ratio(c) for c in counts[index * trials : (index + 1) * trials]]
            r = float(np.mean(values))
            approx.append(r)
            if len(values) > 1 and np.std(values) > 0:
                test = stats.ttest_ind(values, randoms, equal_var=False, alternative="greater")
                passes.append(bool(test.pvalue < 1 - params["confidence_level"]))
            else:
                passes.append(bool(r > rand + 3 * float(np.std(randoms))))
            effective.append(max(0.0, (r - rand) / (1 - rand)) if rand < 1 else 0.0)
        return {
            "approx_ratio": approx,
            "random_approx_ratio": rand,
            "confidence_pass": passes,
            "effective_approx_ratio": effective,
            "score": score_value(float(np.mean(effective)), None),
        }
