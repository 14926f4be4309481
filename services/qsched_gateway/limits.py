"""Resource bounds of one submission, checked on the plan before anything is sent.

Per provider: shots per circuit, circuits per submission, qubits and gates per circuit; for the
simulations the gateway runs itself (local, ibm fake_*, braket local_*) also an estimate of the memory
the simulation needs, refused up front when it is over the budget (the local provider's simulations
also run in a worker process capped at that budget, see providers/local.py).
Per benchmark bounds live in each benchmark's schema (qsched_benchmarks). Every bound can be changed
with an environment variable named in the error; docs/gateway.md lists them."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qsched_core.errors import InvalidArgument

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_shots: int  # per circuit
    max_circuits: int  # per submission
    max_qubits: int  # per circuit (the device's own size is checked separately)
    max_gates: int  # per circuit, directives excluded
    memory_budget_bytes: int = 2048 * MIB  # per simulation run in the gateway's host; 0 = unbounded


# Cloud providers bound shots themselves too; these keep one request from asking for absurd work.
_CLOUD = Limits(max_shots=100_000, max_circuits=1_000, max_qubits=1_000, max_gates=1_000_000)
DEFAULTS: Mapping[str, Limits] = {
    "local": Limits(max_shots=1_000_000, max_circuits=10_000, max_qubits=64, max_gates=1_000_000),
    "ibm": _CLOUD,
    "braket": _CLOUD,
    "ionq": _CLOUD,
    "azure": _CLOUD,
}
_FIELDS = {
    "max_shots": "MAX_SHOTS",
    "max_circuits": "MAX_CIRCUITS",
    "max_qubits": "MAX_QUBITS",
    "max_gates": "MAX_GATES",
}
MEMORY_VARIABLE = "QSCHED_GATEWAY_SIM_MEMORY_MB"
_DIRECTIVES = {"barrier", "delay", "snapshot", "save_statevector", "save_counts", "measure", "reset"}


def variable(provider: str, what: str) -> str:
    """The environment variable overriding `what` (e.g. "max_shots") for `provider`."""
    return f"QSCHED_GATEWAY_{_FIELDS[what]}_{provider.upper()}"


def limits_for(provider: str, environ: Mapping[str, str] | None = None) -> Limits:
    env = os.environ if environ is None else environ
    base = DEFAULTS.get(provider, _CLOUD)
    values = {name: int(env.get(variable(provider, name), getattr(base, name))) for name in _FIELDS}
    memory = int(float(env.get(MEMORY_VARIABLE, base.memory_budget_bytes / MIB)) * MIB)
    return Limits(**values, memory_budget_bytes=memory)


def simulation_bytes(qubits: int, clbits: int, shots: int, noisy: bool) -> int:
    """What one circuit's local (qiskit-aer) simulation needs at most, roughly: the state (a
    statevector, or a density matrix when Aer would pick one for a noisy circuit with more shots than
    basis states), a working copy, and a classical record per shot (Aer keeps per-shot outcomes of a
    noisy simulation until it tallies them), plus the counts."""
    state = 16 * 2**qubits
    # Aer's automatic method takes the density matrix when it fits in half the host's memory.
    if noisy and qubits <= 24 and shots > 2**qubits and 16 * 4**qubits <= _host_memory() // 2:
        state = max(state, 16 * 4**qubits)
    per_shot = math.ceil(max(clbits, 1) / 8) + 16 if noisy else 0
    distinct = min(shots, 2 ** min(clbits, 40))
    return 2 * state + shots * per_shot + distinct * (clbits + 120)


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _gates(circuit) -> int:
    return sum(1 for inst in circuit.data if inst.operation.name not in _DIRECTIVES)


@dataclass(frozen=True)
class Part:
    """What the check needs of a plan part: its name (benchmark or "" for circuits), circuits, shots."""

    name: str
    circuits: Sequence
    shots: int


def check(provider: str, parts: Sequence[Part], simulated: bool, noisy: bool, limits: Limits) -> None:
    """Raise INVALID_ARGUMENT / OVER_LIMIT or OVER_MEMORY_BUDGET naming the bound, the provider and
    the variable that changes it."""
    total = sum(len(p.circuits) for p in parts)
    if total > limits.max_circuits:
        raise _over(provider, "max_circuits", f"{total} circuits", limits.max_circuits, "")
    for part in parts:
        where = f"benchmark {part.name!r}: " if part.name else ""
        if part.shots > limits.max_shots:
            raise _over(provider, "max_shots", f"{part.shots} shots per circuit", limits.max_shots, where)
        for index, circuit in enumerate(part.circuits):
            if circuit.num_qubits > limits.max_qubits:
                what = f"circuit {index} has {circuit.num_qubits} qubits"
                raise _over(provider, "max_qubits", what, limits.max_qubits, where)
            gates = _gates(circuit)
            if gates > limits.max_gates:
                raise _over(
                    provider, "max_gates", f"circuit {index} has {gates} gates", limits.max_gates, where
                )
    if not simulated or not limits.memory_budget_bytes:
        return
    need = max(
        (simulation_bytes(c.num_qubits, c.num_clbits, p.shots, noisy) for p in parts for c in p.circuits),
        default=0,
    )
    if need > limits.memory_budget_bytes:
        budget = limits.memory_budget_bytes // MIB
        raise InvalidArgument(
            "OVER_MEMORY_BUDGET",
            f"the {provider} simulation would need about {math.ceil(need / MIB)} MiB, over the budget of "
            f"{budget} MiB per simulation (fewer qubits or shots, or raise {MEMORY_VARIABLE})",
            provider=provider,
            needed_mib=math.ceil(need / MIB),
            budget_mib=budget,
            variable=MEMORY_VARIABLE,
        )


def _over(provider: str, what: str, got: str, limit: int, where: str) -> InvalidArgument:
    name = variable(provider, what)
    key = "shots" if what == "max_shots" else what
    return InvalidArgument(
        "OVER_LIMIT",
        f"{where}{got}, over the {provider} provider's limit of {limit} ({what}; set {name} to change it)",
        provider=provider,
        limit=limit,
        key=key,
        variable=name,
    )
