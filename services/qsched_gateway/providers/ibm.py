"""`ibm`: IBM Quantum through qiskit-ibm-runtime (SamplerV2).

- `ibm:<backend>` (e.g. ibm:ibm_fez): QiskitRuntimeService with QISKIT_IBM_TOKEN, QISKIT_IBM_CHANNEL
  (default ibm_quantum_platform), QISKIT_IBM_INSTANCE (CRN, optional) and QISKIT_IBM_URL (optional
  endpoint override). Circuits are transpiled to the backend's ISA and sent as one Sampler job; the
  job id is the provider task id, re-attached after restarts through service.job(id).
- `ibm:fake_<name>`: qiskit-ibm-runtime's local testing mode (SamplerV2 on a fake backend, Aer noise),
  offline; runs inside Submit (worker thread) and stores its result at once."""

from __future__ import annotations

import copy
import dataclasses
import uuid

import qiskit_ibm_runtime

from qsched_benchmarks.devices import DeviceInfo, fake_devices
from qsched_gateway.errors import not_configured, unknown_device
from qsched_gateway.providers.base import Adapter, NativeTask, StatusUpdate, bitstring_counts
from qsched_gateway.registry import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, TaskResultData

STATES = {
    "INITIALIZING": QUEUED,
    "QUEUED": QUEUED,
    "VALIDATING": QUEUED,
    "RUNNING": RUNNING,
    "DONE": COMPLETED,
    "ERROR": FAILED,
    "CANCELLED": CANCELLED,
}


def _info(backend, simulator: bool) -> DeviceInfo:
    cmap = getattr(backend, "coupling_map", None)
    return DeviceInfo(
        "ibm",
        backend.name,
        backend.num_qubits,
        coupling=[tuple(e) for e in cmap.get_edges()] if cmap else [],
        simulator=simulator,
        basis_gates=sorted(n for n in backend.operation_names if n not in {"measure", "reset", "delay"}),
        noise_model=backend.name if simulator else "",
        description="qiskit-ibm-runtime local testing mode" if simulator else "IBM Quantum backend",
        version=str(getattr(backend, "backend_version", "")),
    )


def _counts(pub_result) -> dict[str, int]:
    return bitstring_counts(pub_result.join_data().get_counts())


class IbmAdapter(Adapter):
    name = "ibm"
    poll_interval = 10.0
    offline_capability = "local testing mode on fake backends (ibm:fake_<name>)"
    credential_variables = ("QISKIT_IBM_TOKEN",)

    def __init__(self, credentials):
        super().__init__(credentials)
        self._service = None
        self._fake_devices: list[DeviceInfo] | None = None

    def sdk_version(self) -> str:
        return f"qiskit-ibm-runtime {qiskit_ibm_runtime.__version__}"

    def configured(self) -> tuple[bool, str]:
        source = self.credentials.source(*self.credential_variables)
        return True, source if source != "none" else "not needed (fake backends only)"

    def service(self):
        if self._service is None:
            token = self.credentials.get("QISKIT_IBM_TOKEN")
            if not token:
                raise not_configured("ibm", "QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE)")
            kwargs = {
                "channel": self.credentials.get("QISKIT_IBM_CHANNEL") or "ibm_quantum_platform",
                "token": token,
            }
            for variable, key in (("QISKIT_IBM_INSTANCE", "instance"), ("QISKIT_IBM_URL", "url")):
                if self.credentials.get(variable):
                    kwargs[key] = self.credentials.get(variable)
            self._service = qiskit_ibm_runtime.QiskitRuntimeService(**kwargs)
        return self._service

    def _fake(self, native: str):
        from qiskit_ibm_runtime.fake_provider import FakeProviderForBackendV2

        try:
            return FakeProviderForBackendV2().backend(native)
        except Exception as exc:
            raise unknown_device(f"ibm:{native}") from exc

    def list_devices(self) -> list[DeviceInfo]:
        # The fake backends never change and take seconds to build: described once (shared with
        # the local provider).
        if self._fake_devices is None:
            self._fake_devices = [
                dataclasses.replace(d, provider="ibm", description="qiskit-ibm-runtime local testing mode")
                for d in fake_devices()
            ]
        devices = [copy.copy(d) for d in self._fake_devices]
        if self.credentials.get("QISKIT_IBM_TOKEN"):
            for backend in self.service().backends():
                info = _info(backend, False)
                status = backend.status()
                info.status = "ONLINE" if status.operational else "OFFLINE"
                info.pending_tasks = int(status.pending_jobs)
                devices.append(info)
        return devices

    def runs_here(self, device: DeviceInfo) -> bool:
        return device.native.startswith("fake_")  # the SDK's local testing mode: Aer in this process

    def device(self, native: str) -> DeviceInfo:
        if native.startswith("fake_"):
            return _info(self._fake(native), True)
        backend = self.service().backend(native)
        info = _info(backend, False)
        status = backend.status()
        info.status = "ONLINE" if status.operational else "OFFLINE"
        info.pending_tasks = int(status.pending_jobs)
        return info

    def submit(self, device, circuits, shots, options, labels) -> list[NativeTask]:
        from qiskit.transpiler import generate_preset_pass_manager
        from qiskit_ibm_runtime import SamplerV2

        backend = (
            self._fake(device.native)
            if device.native.startswith("fake_")
            else self.service().backend(device.native)
        )
        manager = generate_preset_pass_manager(
            optimization_level=options.optimization_level,
            backend=backend,
            seed_transpiler=options.seed_transpiler,
        )
        isa = manager.run(list(circuits))
        sampler = SamplerV2(mode=backend)
        if options.seed_simulator is not None and device.native.startswith("fake_"):
            sampler.options.simulator.seed_simulator = options.seed_simulator
        job = sampler.run(isa, shots=shots)
        indices = list(range(len(circuits)))
        if not device.native.startswith("fake_"):
            return [NativeTask(job.job_id(), indices, {"backend": device.native}, QUEUED, "QUEUED")]
        result = job.result()
        data = TaskResultData(
            [_counts(pub) for pub in result],
            indices,
            0.0,
            {"backend": device.native, "local_testing_mode": True, "local_job_id": job.job_id()},
        )
        native_id = f"local-{uuid.uuid4().hex}"
        registry = self.registry

        def store() -> None:
            data.circuit_indices = registry.task(f"ibm/{native_id}").circuit_indices
            registry.save_result(f"ibm/{native_id}", data)

        return [NativeTask(native_id, indices, {"local": True}, COMPLETED, "DONE", launch=store)]

    def status(self, task) -> StatusUpdate:
        job = self.service().job(task.native_id)
        status = str(getattr(job.status(), "name", job.status()))
        message = ""
        if status == "ERROR":
            try:
                message = job.error_message() or ""
            except Exception:
                message = "failed"
        return StatusUpdate(STATES.get(status, QUEUED), status, message, 0)

    def cancel(self, task) -> StatusUpdate:
        job = self.service().job(task.native_id)
        job.cancel()
        return self.status(task)

    def result(self, task) -> TaskResultData:
        job = self.service().job(task.native_id)
        result = job.result()
        try:
            seconds = float(job.usage())
        except Exception:
            seconds = 0.0
        return TaskResultData(
            [_counts(pub) for pub in result],
            list(range(len(result))),
            seconds,
            {"ibm_job_id": task.native_id},
        )
