"""What a benchmark is: a schema, a circuit builder and a scorer, plus shared statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qsched_benchmarks.errors import FailedPrecondition


@dataclass
class Built:
    circuits: list
    shots: int
    data: dict[str, Any] = field(default_factory=dict)  # JSON-able: what scoring needs later


@dataclass
class ScoreContext:
    execution_seconds: float = 0.0  # device execution time summed over this benchmark's circuits
    device_metadata: dict[str, Any] = field(default_factory=dict)


class Benchmark:
    name = ""
    schema: dict = {}

    def check(self, params: dict) -> None:
        """Cross-field rules a JSON Schema cannot say (raise invalid_config)."""

    def build(self, params: dict, device) -> Built:
        raise NotImplementedError

    def score(self, params: dict, data: dict, counts: list[dict[str, int]], context: ScoreContext) -> dict:
        raise NotImplementedError


def score_value(value: float | None, uncertainty: float | None) -> dict[str, float | None]:
    return {
        "value": None if value is None else float(value),
        "uncertainty": None if uncertainty is None else float(uncertainty),
    }


def binomial(successes: float, total: float) -> tuple[float, float]:
    """p and its binomial standard error sqrt(p(1-p)/N)."""
    if total <= 0:
        return 0.0, 0.0
    p = successes / total
    return p, math.sqrt(max(p * (1 - p), 0.0) / total)


def needs_qubits(device, qubits: int, what: str) -> None:
    if qubits > device.qubits:
        raise FailedPrecondition(
            "DEVICE_TOO_SMALL",
            f"{what} needs {qubits} qubits, {device.name} has {device.qubits}",
            device=device.name,
            qubits=qubits,
        )


def connected_subset(device, size: int) -> tuple[list[int], list[tuple[int, int]]]:
    """`size` physical qubits forming a connected subgraph (BFS from the best-connected qubit), and
    the edges among them as pairs of positions 0..size-1 (all pairs for all-to-all devices)."""
    needs_qubits(device, size, "this benchmark")
    if not device.coupling:
        return list(range(size)), [(a, b) for a in range(size) for b in range(a + 1, size)]
    edges = device.edges()
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    best: list[int] = []
    for start in sorted(neighbours, key=lambda q: (-len(neighbours[q]), q))[:8]:
        seen = [start]
        frontier = [start]
        while frontier and len(seen) < size:
            q = frontier.pop(0)
            for n in sorted(neighbours[q]):
                if n not in seen and len(seen) < size:
                    seen.append(n)
                    frontier.append(n)
        if len(seen) > len(best):
            best = seen
        if len(best) == size:
            break
    if len(best) < size:
        raise FailedPrecondition(
            "DEVICE_TOO_SMALL", f"{device.name} has no connected set of {size} qubits", device=device.name
        )
    position = {q: i for i, q in enumerate(best)}
    local = sorted(
        {
            (min(position[a], position[b]), max(position[a], position[b]))
            for a, b in edges
            if a in position and b in position
        }
    )
    return best, local
