"""`ionq`: IonQ Quantum Cloud over its REST API v0.4 (plain HTTPS, no extra SDK).

Circuits are sent as `ionq.circuit.v1` JSON in the `qis` gateset (one job per circuit); IonQ measures
every qubit at the end and returns probabilities keyed by the integer outcome (qubit 0 = least
significant bit), turned here into counts for the circuit's classical bits. Credentials: IONQ_API_KEY
(header `Authorization: apiKey …`); IONQ_API_URL overrides the endpoint (default
https://api.ionq.co/v0.4). Job states: submitted/ready -> QUEUED, started/running -> RUNNING,
completed, canceled, failed (IonQ gives no queue position)."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request

import qiskit

from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.errors import ProviderError, invalid_program, not_configured, unknown_device
from qsched_gateway.providers.base import Adapter, NativeTask, StatusUpdate, probabilities_to_counts
from qsched_gateway.registry import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, TaskResultData

DEFAULT_URL = "https://api.ionq.co/v0.4"
STATES = {
    "submitted": QUEUED,
    "ready": QUEUED,
    "started": RUNNING,
    "running": RUNNING,
    "completed": COMPLETED,
    "canceled": CANCELLED,
    "failed": FAILED,
}
# Used when the backends list cannot be fetched (no key): names and sizes as IonQ documents them.
KNOWN = {"simulator": 29, "qpu.aria-1": 25, "qpu.forte-1": 36, "qpu.forte-enterprise-1": 36}
# qiskit gate -> (IonQ qis gate, controls taken from the leading qubits, has rotation)
GATES = {
    "x": ("x", 0, False),
    "y": ("y", 0, False),
    "z": ("z", 0, False),
    "h": ("h", 0, False),
    "s": ("s", 0, False),
    "sdg": ("si", 0, False),
    "t": ("t", 0, False),
    "tdg": ("ti", 0, False),
    "sx": ("v", 0, False),
    "sxdg": ("vi", 0, False),
    "rx": ("rx", 0, True),
    "ry": ("ry", 0, True),
    "rz": ("rz", 0, True),
    "cx": ("x", 1, False),
    "cy": ("y", 1, False),
    "cz": ("z", 1, False),
    "ccx": ("x", 2, False),
    "swap": ("swap", 0, False),
    "rxx": ("xx", 0, True),
    "ryy": ("yy", 0, True),
    "rzz": ("zz", 0, True),
}


def to_ionq(circuit) -> tuple[dict, dict[int, int]]:
    """-> (ionq.circuit.v1 input, qubit -> clbit of the measured qubits)."""
    if any(
        inst.operation.name not in GATES and inst.operation.name not in {"measure", "barrier"}
        for inst in circuit.data
    ):
        circuit = qiskit.transpile(circuit, basis_gates=sorted(GATES), optimization_level=0)
    gates = []
    measured: dict[int, int] = {}
    for inst in circuit.data:
        name = inst.operation.name
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if name == "barrier":
            continue
        if name == "measure":
            measured[qubits[0]] = circuit.find_bit(inst.clbits[0]).index
            continue
        if measured.keys() & set(qubits):
            raise invalid_program("IonQ measures at the end only: gate after a measurement")
        gate, controls, rotation = GATES[name]
        item: dict = {"gate": gate, "targets": qubits[controls:]}
        if controls:
            item["controls"] = qubits[:controls]
        if rotation:
            item["rotation"] = float(inst.operation.params[0])
        gates.append(item)
    if not measured:
        raise invalid_program("the circuit measures nothing")
    return {"gateset": "qis", "qubits": circuit.num_qubits, "circuit": gates}, measured


def marginal_counts(probabilities: dict, shots: int, qubits: int, measured: dict[int, int], clbits: int):
    full = probabilities_to_counts(probabilities, shots, qubits)
    out: dict[str, int] = {}
    for key, value in full.items():
        bits = ["0"] * clbits
        for qubit, clbit in measured.items():
            bits[clbits - 1 - clbit] = key[qubits - 1 - qubit]
        text = "".join(bits)
        out[text] = out.get(text, 0) + value
    return out


class IonQAdapter(Adapter):
    name = "ionq"
    poll_interval = 5.0
    credential_variables = ("IONQ_API_KEY",)

    def sdk_version(self) -> str:
        return f"REST API v0.4 (qiskit {qiskit.__version__} for conversion)"

    def _url(self) -> str:
        return (self.credentials.get("IONQ_API_URL") or DEFAULT_URL).rstrip("/")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        key = self.credentials.get("IONQ_API_KEY")
        if not key:
            raise not_configured("ionq", "IONQ_API_KEY")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self._url() + path, data=data, method=method)
        request.add_header("Authorization", f"apiKey {key}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise ProviderError("PROVIDER_ERROR", f"IonQ {method} {path}: HTTP {exc.code} {detail}") from exc

    def list_devices(self) -> list[DeviceInfo]:
        if not self.configured()[0]:
            return [self._static(name) for name in KNOWN]
        return [self._info(item) for item in self._call("GET", "/backends")]

    def _static(self, name: str) -> DeviceInfo:
        return DeviceInfo("ionq", name, KNOWN[name], simulator=name == "simulator", status="UNKNOWN")

    def _info(self, item: dict) -> DeviceInfo:
        status = str(item.get("status", "")).upper()
        return DeviceInfo(
            "ionq",
            item["backend"],
            int(item.get("qubits", 0)),
            simulator=item["backend"] == "simulator",
            status="ONLINE" if status == "AVAILABLE" else status,
            description=f"IonQ {item['backend']}; average queue {item.get('average_queue_time', '?')} ms",
        )

    def device(self, native: str) -> DeviceInfo:
        for device in self.list_devices():
            if device.native == native:
                return device
        raise unknown_device(f"ionq:{native}", f"IonQ backends: {', '.join(KNOWN)}")

    def tasks_for(self, circuits: int) -> int:
        return circuits

    def submit(self, device, circuits, shots, options, labels) -> list[NativeTask]:
        tasks = []
        for index, circuit in enumerate(circuits):
            program, measured = to_ionq(circuit)
            body = {
                "type": "ionq.circuit.v1",
                "backend": device.native,
                "shots": shots,
                "name": labels.get("qsched_job_id") or "qsched",
                "metadata": {k: v for k, v in labels.items() if v},
                "input": program,
            }
            job = self._call("POST", "/jobs", body)
            meta = {
                "measured": {str(q): c for q, c in measured.items()},
                "qubits": program["qubits"],
                "clbits": circuit.num_clbits,
            }
            tasks.append(
                NativeTask(
                    job["id"], [index], meta, STATES.get(job.get("status", ""), QUEUED), job.get("status", "")
                )
            )
        return tasks

    def status(self, task) -> StatusUpdate:
        job = self._call("GET", f"/jobs/{task.native_id}")
        status = job.get("status", "")
        failure = job.get("failure") or {}
        message = failure.get("error", "") if isinstance(failure, dict) else str(failure)
        return StatusUpdate(STATES.get(status, QUEUED), status, message, 0)

    def cancel(self, task) -> StatusUpdate:
        job = self._call("PUT", f"/jobs/{task.native_id}/status/cancel")
        status = job.get("status", "canceled")
        return StatusUpdate(STATES.get(status, CANCELLED), status, "cancelled on request", 0)

    def result(self, task) -> TaskResultData:
        job = self._call("GET", f"/jobs/{task.native_id}")
        probabilities = self._call("GET", f"/jobs/{task.native_id}/results/probabilities")
        measured = {int(q): c for q, c in task.meta["measured"].items()}
        counts = marginal_counts(
            probabilities, task.shots, task.meta["qubits"], measured, task.meta["clbits"]
        )
        milliseconds = job.get("execution_time") or (job.get("stats") or {}).get("execution_time") or 0
        meta = {
            k: job.get(k) for k in ("backend", "status", "submitted_at", "completed_at", "noise") if k in job
        }
        return TaskResultData(
            [counts], [0], float(milliseconds) / 1000 if not math.isnan(float(milliseconds)) else 0.0, meta
        )
