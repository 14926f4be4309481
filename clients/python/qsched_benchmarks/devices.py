"""The device a benchmark is built for, and the local simulators' devices.

`DeviceInfo` is what the gateway's provider adapters describe a device with and what the
benchmarks read (qubits, coupling map). The local devices (qiskit-aer: the ideal
`aer_simulator`, and `fake_<name>` with the noise model of an IBM fake backend from
qiskit-ibm-runtime's snapshots) are described here once: the gateway's local adapter runs them,
and the SDK's offline replay rebuilds a benchmark for them without the gateway."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsched_benchmarks.errors import unknown_device

IDEAL = "aer_simulator"
IDEAL_QUBITS = 30  # metriq-gym's local aer_simulator size


@dataclass
class DeviceInfo:
    provider: str
    native: str  # the device name within the provider
    qubits: int
    coupling: list[tuple[int, int]] = field(default_factory=list)  # empty = all-to-all
    simulator: bool = False
    status: str = "ONLINE"
    basis_gates: list[str] = field(default_factory=list)
    noise_model: str = ""
    pending_tasks: int = -1
    description: str = ""
    version: str = ""

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.native}"

    def metadata(self) -> dict[str, Any]:
        return {"num_qubits": self.qubits, "simulator": self.simulator, "version": self.version}

    def edges(self) -> list[tuple[int, int]]:
        """Undirected coupling edges (a < b); the complete graph for all-to-all devices."""
        if self.coupling:
            return sorted({(min(a, b), max(a, b)) for a, b in self.coupling if a != b})
        return [(a, b) for a in range(self.qubits) for b in range(a + 1, self.qubits)]


def _fake_provider():
    from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

    return FakeProviderForBackendV2()


def _coupling(backend) -> list[tuple[int, int]]:
    cmap = getattr(backend, "coupling_map", None)
    return [tuple(edge) for edge in cmap.get_edges()] if cmap else []


def _ideal() -> DeviceInfo:
    import qiskit_aer

    return DeviceInfo(
        "local",
        IDEAL,
        IDEAL_QUBITS,
        simulator=True,
        basis_gates=[],
        description="qiskit-aer AerSimulator, noiseless, all-to-all",
        version=qiskit_aer.__version__,
    )


def _fake_info(backend) -> DeviceInfo:
    return DeviceInfo(
        "local",
        backend.name,
        backend.num_qubits,
        coupling=_coupling(backend),
        simulator=True,
        basis_gates=sorted(n for n in backend.operation_names if n not in {"measure", "reset", "delay"}),
        noise_model=backend.name,
        description=f"qiskit-aer, noise model of IBM {backend.name} (qiskit-ibm-runtime snapshot)",
        version=str(getattr(backend, "backend_version", "")),
    )


def fake_backend(native: str):
    """The IBM fake backend `native` (fake_<name>) names."""
    if not native.startswith("fake_"):
        raise unknown_device(f"local:{native}", "local devices are aer_simulator and fake_<ibm backend>")
    try:
        return _fake_provider().backend(native)
    except Exception as exc:
        raise unknown_device(f"local:{native}", "see ListDevices(provider='local')") from exc


_fake_backends_lock = threading.Lock()
_fake_backends: list | None = None


def fake_backends() -> list:
    """Every IBM fake backend, their targets loaded (seconds of CPU: each reads its snapshot), once per
    process: the gateway's local and ibm providers both describe them."""
    global _fake_backends
    with _fake_backends_lock:
        if _fake_backends is None:
            backends = _fake_provider().backends()
            for backend in backends:
                backend.num_qubits  # noqa: B018 - builds the target now, under the lock
            _fake_backends = backends
        return _fake_backends


_described: list[DeviceInfo] | None = None


def _cache_file() -> Path:
    import platformdirs
    import qiskit_ibm_runtime

    root = os.environ.get("QSCHED_CACHE_DIR") or platformdirs.user_cache_dir("qsched")
    return Path(root) / f"fake-backends-{qiskit_ibm_runtime.__version__}.json"


def fake_devices() -> list[DeviceInfo]:
    """The local provider's description of every fake backend, by name. Building it takes seconds of
    CPU (fake_backends()), so it is kept per process and in a file of the user's cache directory
    (QSCHED_CACHE_DIR), per qiskit-ibm-runtime version: the snapshots only change with it."""
    global _described
    with _fake_backends_lock:
        if _described is not None:
            return _described
        path = _cache_file()
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            items = json.loads(path.read_text())
            _described = [DeviceInfo(**{**i, "coupling": [tuple(e) for e in i["coupling"]]}) for i in items]
            return _described
    described = sorted((_fake_info(b) for b in fake_backends()), key=lambda d: d.native)
    with contextlib.suppress(OSError):  # no cache directory: described again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps([dataclasses.asdict(d) for d in described]))
        partial.replace(path)
    with _fake_backends_lock:
        _described = described
    return described


def local_devices() -> list[DeviceInfo]:
    """Every local device: the ideal simulator, then the fake backends by name."""
    return [_ideal(), *fake_devices()]


def local_device(native: str) -> DeviceInfo:
    """The local device `native` (aer_simulator or fake_<ibm backend>)."""
    return _ideal() if native == IDEAL else _fake_info(fake_backend(native))
