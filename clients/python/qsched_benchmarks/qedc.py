"""QED-C application-oriented benchmarks as metriq-gym runs them: Bernstein-Vazirani, Hidden Shift,
Phase Estimation, Quantum Fourier Transform.

Per circuit, QED-C's polarization fidelity: the Hellinger fidelity F = (Σ sqrt(p·q))² between the
measured distribution p and the ideal one q, rescaled so the uniform distribution scores 0:
(F - F_uniform)/(1 - F_uniform) ('fidelity'; the raw F is 'hf_fidelity'). accuracy_score = the
circuit-count-weighted mean fidelity over all circuits, uncertainty = pooled standard deviation
sqrt(Σ n_g·var_g / Σ n_g) over the qubit-count groups g. Secrets and phases are drawn from a fixed-seed
generator (seed 0) so a config always produces the same circuits."""

from __future__ import annotations

import math

import numpy as np

from qsched_benchmarks.core import Benchmark, Built, needs_qubits, score_value
from qsched_benchmarks.errors import invalid_config
from qsched_benchmarks.schema import MAX_QUBITS, SHOTS, integer, number, obj

SEED = 0


def hellinger(counts: dict[str, int], expected: dict[str, float]) -> float:
    total = sum(counts.values()) or 1
    return sum(math.sqrt(counts.get(k, 0) / total * q) for k, q in expected.items()) ** 2


def polarization_fidelity(counts: dict[str, int], expected: dict[str, float]) -> tuple[float, float]:
    width = len(next(iter(expected)))
    counts = {k.zfill(width)[-width:]: v for k, v in counts.items()}
    raw = hellinger(counts, expected)
    uniform = sum(math.sqrt(q / 2**width) for q in expected.values()) ** 2
    rescaled = raw if uniform >= 1 else (raw - uniform) / (1 - uniform)
    return rescaled, raw


def _pick(rng: np.random.Generator, population: int, count: int) -> list[int]:
    count = min(count, population)
    return sorted(int(v) for v in rng.choice(population, size=count, replace=False))


def _qubit_range(params: dict, step: int = 1, minimum: int = 2) -> list[int]:
    start = max(params["min_qubits"], minimum)
    return list(range(start, params["max_qubits"] + 1, max(params["skip_qubits"], step)))


QEDC_PROPERTIES = {
    "shots": SHOTS,
    "min_qubits": integer(2, 2),
    "max_qubits": integer(6, 2, MAX_QUBITS),
    "skip_qubits": integer(1, 1),
    "max_circuits": integer(3, 1, 1_000),
}


class QedcBenchmark(Benchmark):
    def check(self, params: dict) -> None:
        if params.get("min_qubits", 0) > params.get("max_qubits", 0):
            raise invalid_config(f"{self.name}: min_qubits must not exceed max_qubits", key="min_qubits")
        pinned = [k for k in ("input_value", "init_phase") if params.get(k) is not None]
        if pinned and params.get("max_circuits") != 1:
            raise invalid_config(
                f"{self.name}: {pinned[0]} is set, so max_circuits must be 1", key="max_circuits"
            )
        if params.get("use_midcircuit_measurement"):
            raise invalid_config(
                f"{self.name}: use_midcircuit_measurement=true is not supported by this gateway",
                key="use_midcircuit_measurement",
            )

    def circuits(self, params: dict) -> list[tuple[int, str, object, dict[str, float]]]:
        """(qubits, circuit id, circuit, expected distribution) for every circuit."""
        raise NotImplementedError

    def build(self, params: dict, device) -> Built:
        items = self.circuits(params)
        needs_qubits(device, max(c.num_qubits for _, _, c, _ in items), self.name)
        return Built(
            [c for _, _, c, _ in items],
            params["shots"],
            {"ids": [[str(n), cid] for n, cid, _, _ in items], "expected": [e for _, _, _, e in items]},
        )

    def score(self, params, data, counts, context) -> dict:
        metrics: dict[str, dict[str, dict[str, float]]] = {}
        groups: dict[str, list[float]] = {}
        for (qubits, cid), expected, observed in zip(data["ids"], data["expected"], counts, strict=True):
            fidelity, raw = polarization_fidelity(observed, expected)
            metrics.setdefault(qubits, {})[cid] = {"fidelity": fidelity, "hf_fidelity": raw}
            groups.setdefault(qubits, []).append(fidelity)
        values = [f for group in groups.values() for f in group]
        mean = float(np.mean(values))
        pooled = math.sqrt(sum(len(g) * float(np.var(g)) for g in groups.values()) / len(values))
        accuracy = score_value(mean, pooled)
        return {"circuit_metrics": metrics, "accuracy_score": accuracy, "score": accuracy}


class BernsteinVazirani(QedcBenchmark):
    name = "Bernstein-Vazirani"
    schema = obj(
        name,
        name,
        {**QEDC_PROPERTIES, "method": integer(1, 1, 2), "input_value": integer(minimum=0)},
    )

    def circuits(self, params):
        from qiskit import QuantumCircuit

        rng = np.random.default_rng(SEED)
        out = []
        for n in _qubit_range(params):
            width = n - 1
            secrets = (
                [params["input_value"] % 2**width]
                if params.get("input_value") is not None
                else _pick(rng, 2**width, params["max_circuits"])
            )
            for s in secrets:
                if params["method"] == 1:
                    qc = QuantumCircuit(n, width, name=f"bv{n}_{s}")
                    qc.x(width)
                    qc.h(range(n))
                    qc.barrier()
                    for i in range(width):
                        if s >> i & 1:
                            qc.cx(i, width)
                    qc.barrier()
                    qc.h(range(width))
                    qc.measure(range(width), range(width))
                else:  # one data qubit reused with mid-circuit measurement and reset
                    qc = QuantumCircuit(2, width, name=f"bv{n}_{s}")
                    qc.x(1)
                    qc.h(1)
                    for i in range(width):
                        qc.h(0)
                        if s >> i & 1:
                            qc.cx(0, 1)
                        qc.h(0)
                        qc.measure(0, i)
                        qc.reset(0)
                out.append((n, str(s), qc, {format(s, f"0{width}b"): 1.0}))
        return out


class HiddenShift(QedcBenchmark):
    name = "Hidden Shift"
    schema = obj(
        name, name, {**QEDC_PROPERTIES, "method": integer(1, 1, 1), "input_value": integer(minimum=0)}
    )

    def circuits(self, params):
        from qiskit import QuantumCircuit

        rng = np.random.default_rng(SEED)
        out = []
        start = params["min_qubits"] + params["min_qubits"] % 2
        for n in range(
            start, params["max_qubits"] + 1, max(2, params["skip_qubits"] + params["skip_qubits"] % 2)
        ):
            half = n // 2
            shifts = (
                [params["input_value"] % 2**n]
                if params.get("input_value") is not None
                else _pick(rng, 2**n, params["max_circuits"])
            )
            for s in shifts:
                qc = QuantumCircuit(n, n, name=f"hs{n}_{s}")
                qc.h(range(n))
                qc.barrier()
                flips = [i for i in range(n) if s >> i & 1]
                if flips:
                    qc.x(flips)
                for i in range(half):
                    qc.cz(i, i + half)
                if flips:
                    qc.x(flips)
                qc.barrier()
                qc.h(range(n))
                qc.barrier()
                for i in range(half):
                    qc.cz(i, i + half)
                qc.barrier()
                qc.h(range(n))
                qc.measure(range(n), range(n))
                out.append((n, str(s), qc, {format(s, f"0{n}b"): 1.0}))
        return out


def _phase_distribution(theta: float, bits: int) -> dict[str, float]:
    size = 2**bits
    out = {}
    for m in range(size):
        delta = theta - m / size
        amplitude = sum(np.exp(2j * np.pi * k * delta) for k in range(size)) / size
        p = float(abs(amplitude) ** 2)
        if p > 1e-9:
            out[format(m, f"0{bits}b")] = p
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


class PhaseEstimation(QedcBenchmark):
    name = "Phase Estimation"
    schema = obj(
        name,
        name,
        {
            **QEDC_PROPERTIES,
            "min_qubits": integer(3, 3),
            "method": integer(1, 1, 1),
            "init_phase": number(minimum=0),
            "use_midcircuit_measurement": {"type": "boolean", "default": False},
        },
    )

    def circuits(self, params):
        from qiskit import QuantumCircuit
        from qiskit.circuit.library import QFTGate

        rng = np.random.default_rng(SEED)
        out = []
        for n in _qubit_range(params, minimum=3):
            bits = n - 1
            if params.get("init_phase") is not None:
                thetas = [float(params["init_phase"]) % 1.0]
            else:
                thetas = [k / 2**bits for k in _pick(rng, 2**bits, params["max_circuits"])]
            for theta in thetas:
                qc = QuantumCircuit(n, bits, name=f"pe{n}_{theta}")
                qc.x(bits)
                qc.h(range(bits))
                for j in range(bits):
                    qc.cp(2 * np.pi * theta * 2**j, j, bits)
                qc.barrier()
                qc.append(QFTGate(bits).inverse(), range(bits))
                qc.measure(range(bits), range(bits))
                out.append((n, repr(theta), qc, _phase_distribution(theta, bits)))
        return out


class QuantumFourierTransform(QedcBenchmark):
    name = "Quantum Fourier Transform"
    schema = obj(
        name,
        name,
        {
            "shots": SHOTS,
            "num_qubits": integer(5, 2, MAX_QUBITS),
            "max_circuits": integer(3, 1, 1_000),
            "method": integer(1, 1, 2),
            "input_value": integer(minimum=0),
            "use_midcircuit_measurement": {"type": "boolean", "default": False},
        },
    )

    def circuits(self, params):
        from qiskit import QuantumCircuit
        from qiskit.circuit.library import QFTGate

        rng = np.random.default_rng(SEED)
        n = params["num_qubits"]
        size = 2**n
        values = (
            [params["input_value"] % size]
            if params.get("input_value") is not None
            else _pick(rng, size, params["max_circuits"])
        )
        out = []
        for value in values:
            qc = QuantumCircuit(n, n, name=f"qft{n}_{value}")
            if params["method"] == 1:  # |x> -QFT-> add 1 in the Fourier basis -QFT†-> |x+1>
                flips = [i for i in range(n) if value >> i & 1]
                if flips:
                    qc.x(flips)
                qc.barrier()
                qc.append(QFTGate(n), range(n))
                qc.barrier()
                for j in range(n):
                    qc.p(2 * np.pi * 2**j / size, j)
                qc.barrier()
                qc.append(QFTGate(n).inverse(), range(n))
                expected = (value + 1) % size
            else:  # Fourier state of x prepared directly -QFT†-> |x>
                qc.h(range(n))
                for j in range(n):
                    qc.p(2 * np.pi * value * 2**j / size, j)
                qc.barrier()
                qc.append(QFTGate(n).inverse(), range(n))
                expected = value
            qc.measure(range(n), range(n))
            out.append((n, str(value), qc, {format(expected, f"0{n}b"): 1.0}))
        return out
