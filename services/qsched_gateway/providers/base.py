"""What every provider adapter offers the gateway. Adapter methods block (SDK calls, network): the
gateway calls them through asyncio.to_thread, never on the event loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.registry import TaskRecord, TaskResultData


@dataclass(frozen=True)
class Options:
    optimization_level: int = 1
    seed_transpiler: int = 7
    seed_simulator: int | None = None


@dataclass
class NativeTask:
    """One provider task created by submit: its native id, which of the submitted circuits it runs
    (indices into the list given to submit), and non-secret metadata needed to find it again."""

    native_id: str
    circuit_indices: list[int]
    meta: dict[str, Any] = field(default_factory=dict)
    state: str = "QUEUED"
    provider_status: str = ""
    launch: Callable[[], None] | None = None  # started after the task is in the registry


@dataclass
class StatusUpdate:
    state: str
    provider_status: str = ""
    message: str = ""
    queue_position: int = 0


class Adapter:
    """Base class. `tracks_in_registry` adapters (local simulators) update the registry themselves."""

    name = ""
    poll_interval = 5.0
    tracks_in_registry = False
    offline_capability = ""
    credential_variables: tuple[str, ...] = ()

    def __init__(self, credentials):
        self.credentials = credentials
        self.registry = None  # set by the Gateway

    def sdk_version(self) -> str:
        return ""

    def configured(self) -> tuple[bool, str]:
        if not self.credential_variables:
            return True, "not needed"
        source = self.credentials.source(*self.credential_variables)
        return source != "none", source

    def list_devices(self) -> list[DeviceInfo]:
        raise NotImplementedError

    def device(self, native: str) -> DeviceInfo:
        raise NotImplementedError

    def submit(
        self, device: DeviceInfo, circuits: list, shots: int, options: Options, labels: dict[str, str]
    ) -> list[NativeTask]:
        raise NotImplementedError

    def status(self, task: TaskRecord) -> StatusUpdate:
        raise NotImplementedError

    def cancel(self, task: TaskRecord) -> StatusUpdate:
        raise NotImplementedError

    def result(self, task: TaskRecord) -> TaskResultData:
        """Counts of a completed task; circuit_indices number the task's own circuits from 0."""
        raise NotImplementedError

    def runs_here(self, device: DeviceInfo) -> bool:
        """Whether the device is a simulation in the gateway's own host (bounded by its memory budget)."""
        return False

    def tasks_for(self, circuits: int) -> int:
        """How many provider tasks `circuits` circuits of one part become (one batch by default)."""
        return 1

    def cost(self, device: DeviceInfo, per_circuit: list, tasks: int) -> tuple[float, str, str]:
        """(cost, unit, basis) of running the estimated circuits; unit "" when the provider has none."""
        return 0.0, "", f"{self.name} publishes no per-task price the gateway knows"

    def recover(self, registry) -> None:
        """Called once at start with the registry (e.g. to fail lost local tasks)."""

    def stop(self) -> None:
        """Release threads and connections."""


def bitstring_counts(counts: dict[str, int]) -> dict[str, int]:
    """qiskit counts keys with register separators removed (classical bit 0 rightmost)."""
    merged: dict[str, int] = {}
    for key, value in counts.items():
        k = key.replace(" ", "")
        merged[k] = merged.get(k, 0) + int(value)
    return merged


def probabilities_to_counts(probs: dict[str, float], shots: int, width: int) -> dict[str, int]:
    """Counts from a probability histogram keyed by integer (as IonQ and Azure return them), rounded so
    they add up to shots; bit 0 is the least significant bit (rightmost)."""
    items = [(format(int(k), f"0{width}b"), float(p)) for k, p in probs.items()]
    raw = [(key, p * shots) for key, p in items]
    counts = {key: int(v) for key, v in raw}
    short = shots - sum(counts.values())
    for key, _ in sorted(raw, key=lambda kv: kv[1] - int(kv[1]), reverse=True)[: max(short, 0)]:
        counts[key] += 1
    return {k: v for k, v in counts.items() if v}
