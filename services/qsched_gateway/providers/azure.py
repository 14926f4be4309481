"""`azure`: Azure Quantum through the azure-quantum SDK (`azure.quantum.Workspace` and its targets).

- Devices are the workspace's targets that take circuits in a format the gateway writes: `ionq.*`
  (`ionq.circuit.v1` JSON, qis gateset, through the SDK's `IonQ` target) and `quantinuum.*`
  (`honeywell.openqasm.v1`, OpenQASM 2, through the SDK's `Quantinuum` target), listed from the workspace's
  `providerStatus` (qubit counts and availability as the service reports them). Other providers' targets
  (Rigetti Quil, Pasqal pulses, Microsoft's estimator) are not listed.
- One Azure job per circuit; the task id is `azure/<job id>` (a UUID the SDK generates). Status, cancel
  and results go through `Workspace.get_job` / `cancel_job` / `Job.get_results`, so a restarted gateway
  re-attaches by id. Azure states: Queued/Waiting -> QUEUED, Executing/Finishing/CancellationRequested/
  Cancelling -> RUNNING, Succeeded/Completed -> COMPLETED, Failed -> FAILED (with the job's errorData),
  Cancelled -> CANCELLED. Azure reports no queue position.
- Results: IonQ returns exact probabilities keyed by the integer outcome (qubit 0 least significant),
  turned into counts like the `ionq` adapter does; Quantinuum returns one bitstring per shot and classical
  register (taken as bit 0 rightmost, OpenQASM's order). Execution time is endExecutionTime -
  beginExecutionTime; metadata carries the target, times, costEstimate and usage, never storage URIs.
- Credentials (environment or the gateway's credentials file), never logged or stored:
  AZURE_QUANTUM_CONNECTION_STRING (the portal's access-key connection string), or the workspace as
  AZURE_QUANTUM_RESOURCE_ID or AZURE_QUANTUM_SUBSCRIPTION_ID + AZURE_QUANTUM_WORKSPACE_RG +
  AZURE_QUANTUM_WORKSPACE_NAME, with AZURE_QUANTUM_WORKSPACE_LOCATION and either AZURE_QUANTUM_API_KEY (a
  workspace access key) or a service principal (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET: an
  azure-identity token credential). AZURE_QUANTUM_ENDPOINT overrides the data-plane endpoint (default
  https://<location>.quantum.azure.com/), e.g. to reach a test double; the SDK only takes that through
  its private `_quantum_endpoint` argument, since its connection-string parser accepts nothing but
  https://<region>.quantum.azure.com/.
- Cost: Quantinuum's unit is the HQC (syntax checkers `*sc` are free); IonQ bills per gate-shot with a
  per-job minimum on Azure, which the gateway keeps no price list for (cost unit left empty)."""

from __future__ import annotations

import collections
import contextlib
import threading

import azure.quantum
import qiskit
import qiskit.qasm2
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.quantum.target import IonQ, Quantinuum

from qsched_benchmarks.devices import DeviceInfo
from qsched_core.errors import DomainError, FailedPrecondition, PermissionDenied
from qsched_gateway.errors import ProviderError, Unavailable, invalid_program, not_configured, unknown_device
from qsched_gateway.providers.base import Adapter, NativeTask, StatusUpdate
from qsched_gateway.providers.ionq import GATES as IONQ_GATES
from qsched_gateway.providers.ionq import marginal_counts, to_ionq
from qsched_gateway.registry import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, TaskResultData

CONNECTION_STRING = "AZURE_QUANTUM_CONNECTION_STRING"
RESOURCE_ID = "AZURE_QUANTUM_RESOURCE_ID"
SUBSCRIPTION = "AZURE_QUANTUM_SUBSCRIPTION_ID"
RESOURCE_GROUP = "AZURE_QUANTUM_WORKSPACE_RG"
WORKSPACE = "AZURE_QUANTUM_WORKSPACE_NAME"
LOCATION = "AZURE_QUANTUM_WORKSPACE_LOCATION"
API_KEY = "AZURE_QUANTUM_API_KEY"
ENDPOINT = "AZURE_QUANTUM_ENDPOINT"
SERVICE_PRINCIPAL = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")

STATES = {
    "Queued": QUEUED,
    "Waiting": QUEUED,
    "Executing": RUNNING,
    "Finishing": RUNNING,
    "CancellationRequested": RUNNING,
    "Cancelling": RUNNING,
    "Succeeded": COMPLETED,
    "Completed": COMPLETED,
    "Failed": FAILED,
    "Cancelled": CANCELLED,
}
# provider id -> (SDK target class, qsched basis gates (qiskit names))
QASM2_GATES = [
    "x",
    "y",
    "z",
    "h",
    "s",
    "sdg",
    "t",
    "tdg",
    "rx",
    "ry",
    "rz",
    "cx",
    "cz",
    "ccx",
    "u1",
    "u2",
    "u3",
]
PROVIDERS = {"ionq": (IonQ, sorted(IONQ_GATES)), "quantinuum": (Quantinuum, QASM2_GATES)}
# Shown (status UNKNOWN) when the workspace cannot be asked: the SDK's target names, sizes as published.
KNOWN = {
    "ionq.simulator": 29,
    "ionq.qpu.aria-1": 25,
    "ionq.qpu.forte-1": 36,
    "ionq.qpu.forte-enterprise-1": 36,
    "quantinuum.sim.h2-1sc": 56,
    "quantinuum.sim.h2-1e": 56,
    "quantinuum.qpu.h2-1": 56,
}


def _provider_of(target: str) -> str:
    return target.split(".", 1)[0].lower()


def _simulator(target: str) -> bool:
    return ".simulator" in target or ".sim." in target


def to_qasm2(circuit) -> tuple[str, list[tuple[str, int]]]:
    """-> (OpenQASM 2 source in qelib1 gates, the program's classical registers as (name, size))."""
    if not any(inst.operation.name == "measure" for inst in circuit.data):
        raise invalid_program("the circuit measures nothing")
    allowed = set(QASM2_GATES) | {"measure", "barrier", "reset", "id"}
    if any(inst.operation.name not in allowed for inst in circuit.data):
        circuit = qiskit.transpile(circuit, basis_gates=QASM2_GATES, optimization_level=0)
    try:
        source = qiskit.qasm2.dumps(circuit)
        program = qiskit.qasm2.loads(source)
    except Exception as exc:
        raise invalid_program(f"cannot write the circuit as OpenQASM 2 for Quantinuum: {exc}") from exc
    return source, [(r.name, r.size) for r in program.cregs]


def shots_to_counts(results: dict, registers: list[tuple[str, int]]) -> dict[str, int]:
    """Quantinuum's per-shot bitstrings per register -> qiskit counts (last register leftmost)."""
    columns = []
    for name, size in reversed(registers):
        shots = results.get(name)
        if not isinstance(shots, list) or any(len(str(s)) != size for s in shots):
            raise ValueError(f"results lack register {name!r} of {size} bits")
        columns.append([str(s) for s in shots])
    if len({len(c) for c in columns}) != 1:
        raise ValueError("registers have different shot counts")
    return dict(collections.Counter("".join(bits) for bits in zip(*columns, strict=True)))


class AzureAdapter(Adapter):
    name = "azure"
    poll_interval = 5.0
    credential_variables = (CONNECTION_STRING, API_KEY, "AZURE_CLIENT_SECRET")

    def __init__(self, credentials):
        super().__init__(credentials)
        self._lock = threading.Lock()
        self._workspace = None

    def sdk_version(self) -> str:
        return f"azure-quantum {azure.quantum.__version__}"

    # credentials
    def _secret_variable(self) -> str:
        get = self.credentials.get
        if get(CONNECTION_STRING):
            return CONNECTION_STRING
        if not (get(RESOURCE_ID) or all(get(v) for v in (SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE))):
            return ""
        if get(API_KEY):
            return API_KEY
        if all(get(v) for v in SERVICE_PRINCIPAL):
            return "AZURE_CLIENT_SECRET"
        return ""

    def configured(self) -> tuple[bool, str]:
        variable = self._secret_variable()
        return (True, self.credentials.source(variable)) if variable else (False, "none")

    def _connect(self):
        """A Workspace from the settings; raises PROVIDER_NOT_CONFIGURED (never echoing a secret)."""
        from azure.quantum import Workspace
        from azure.quantum._constants import ConnectionConstants
        from azure.quantum._workspace_connection_params import WorkspaceConnectionParams

        get = self.credentials.get
        variable = self._secret_variable()
        if not variable:
            raise not_configured(
                "azure",
                f"{CONNECTION_STRING}, or the workspace ({RESOURCE_ID} or {SUBSCRIPTION}, {RESOURCE_GROUP}, "
                f"{WORKSPACE}) with {LOCATION} and {API_KEY} or a service principal",
            )
        endpoint = get(ENDPOINT)
        try:
            if variable == CONNECTION_STRING:
                params = WorkspaceConnectionParams(connection_string=get(CONNECTION_STRING))
                settings = {
                    "subscription_id": params.subscription_id,
                    "resource_group": params.resource_group,
                    "name": params.workspace_name,
                    "location": params.location,
                    "credential": params.credential,
                }
                endpoint = endpoint or params.quantum_endpoint
            else:
                location = get(LOCATION) or None
                if variable == API_KEY:
                    if not location:
                        raise FailedPrecondition(
                            "PROVIDER_NOT_CONFIGURED",
                            f"azure: an access key needs {LOCATION} (the workspace's region) as well",
                            provider="azure",
                        )
                    credential = AzureKeyCredential(get(API_KEY))
                else:
                    from azure.identity import ClientSecretCredential

                    tenant, client, secret = (get(v) for v in SERVICE_PRINCIPAL)
                    credential = ClientSecretCredential(tenant, client, secret)
                settings = {
                    "subscription_id": get(SUBSCRIPTION) or None,
                    "resource_group": get(RESOURCE_GROUP) or None,
                    "name": get(WORKSPACE) or None,
                    "resource_id": get(RESOURCE_ID) or None,
                    "location": location,
                    "credential": credential,
                }
                if location and not endpoint:
                    endpoint = ConnectionConstants.GET_QUANTUM_PRODUCTION_ENDPOINT(
                        location.replace(" ", "").lower()
                    )
            if endpoint:
                settings["_quantum_endpoint"] = endpoint if endpoint.endswith("/") else endpoint + "/"
            return Workspace(user_agent_app_id="qsched-gateway", **settings)
        except ValueError as exc:
            # the SDK's parameter checks; their messages name the setting, not its value
            raise FailedPrecondition(
                "PROVIDER_NOT_CONFIGURED", f"azure: invalid workspace settings: {exc}", provider="azure"
            ) from None

    def workspace(self):
        with self._lock:
            if self._workspace is None:
                self._workspace = self._connect()
            return self._workspace

    @contextlib.contextmanager
    def _errors(self, action: str):
        """SDK exceptions -> gateway errors. Messages carry the service's error code and text only."""
        try:
            yield
        except DomainError:
            raise
        except ClientAuthenticationError as exc:
            raise PermissionDenied(
                "PROVIDER_AUTH_FAILED",
                f"azure: the workspace refused the credentials while trying to {action} "
                f"(HTTP {exc.status_code}); check the access key or service principal and its role",
                provider="azure",
            ) from None
        except ResourceNotFoundError as exc:
            raise ProviderError("PROVIDER_ERROR", f"azure: {action}: not found ({_reason(exc)})") from None
        except ServiceRequestError as exc:
            raise Unavailable(
                "PROVIDER_UNAVAILABLE", f"azure: cannot reach the workspace to {action}: {type(exc).__name__}"
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise PermissionDenied(
                    "PROVIDER_AUTH_FAILED",
                    f"azure: access denied while trying to {action} ({_reason(exc)})",
                    provider="azure",
                ) from None
            raise ProviderError(
                "PROVIDER_ERROR", f"azure: {action}: HTTP {exc.status_code} {_reason(exc)}"
            ) from None

    # devices
    def list_devices(self) -> list[DeviceInfo]:
        if not self.configured()[0]:
            return [self._static(name) for name in KNOWN]
        with self._errors("list targets"):
            statuses = self.workspace()._get_target_status()  # (provider id, TargetStatus) per target
        return [
            self._info(status)
            for provider_id, status in statuses
            if provider_id.lower() in PROVIDERS and _provider_of(status.id) == provider_id.lower()
        ]

    def _static(self, target: str) -> DeviceInfo:
        return DeviceInfo(
            "azure",
            target,
            KNOWN[target],
            simulator=_simulator(target),
            status="UNKNOWN",
            basis_gates=PROVIDERS[_provider_of(target)][1],
            description="Azure Quantum target (workspace not configured)",
        )

    def _info(self, status) -> DeviceInfo:
        availability = str(getattr(status.current_availability, "value", status.current_availability) or "")
        queue = status.average_queue_time
        return DeviceInfo(
            "azure",
            status.id,
            int(status.num_qubits or KNOWN.get(status.id, 0)),
            simulator=_simulator(status.id),
            status="ONLINE" if availability.lower() == "available" else availability.upper(),
            basis_gates=PROVIDERS[_provider_of(status.id)][1],
            description=f"Azure Quantum {status.id}; {availability or 'availability unknown'}; "
            f"average queue {queue if queue is not None else '?'} s",
        )

    def device(self, native: str) -> DeviceInfo:
        if _provider_of(native) not in PROVIDERS:
            raise unknown_device(
                f"azure:{native}", "the gateway submits to ionq.* and quantinuum.* targets on Azure Quantum"
            )
        if not self.configured()[0]:
            if native in KNOWN:
                return self._static(native)
        else:
            for device in self.list_devices():
                if device.native == native:
                    return device
        raise unknown_device(f"azure:{native}", "not a target of the workspace (see ListDevices)")

    def tasks_for(self, circuits: int) -> int:
        return circuits  # one Azure job per circuit

    def cost(self, device, per_circuit, tasks):
        if _provider_of(device.native) == "quantinuum":
            if device.native.endswith("sc"):
                return 0.0, "HQC", "Quantinuum syntax checkers are free"
            hqc = sum(c.hqc for c in per_circuit)
            return (
                hqc,
                "HQC",
                "Quantinuum HQC per circuit: 5 + shots·(N1q + 10·N2q + 5·(Nmeas + Nreset + qubits))/5000",
            )
        return (
            0.0,
            "",
            "IonQ on Azure Quantum bills per gate-shot with a per-job minimum; no price list kept here",
        )

    # tasks
    def submit(self, device, circuits, shots, options, labels) -> list[NativeTask]:
        provider = _provider_of(device.native)
        target_cls = PROVIDERS[provider][0]
        programs = []
        for circuit in circuits:  # convert everything before the first job is created
            if provider == "ionq":
                program, measured = to_ionq(circuit)
                meta = {
                    "format": "ionq",
                    "measured": {str(q): c for q, c in measured.items()},
                    "qubits": program["qubits"],
                    "clbits": circuit.num_clbits,
                }
            else:
                program, registers = to_qasm2(circuit)
                meta = {"format": "quantinuum", "registers": registers}
            programs.append((program, meta))
        workspace = self.workspace()
        target = target_cls(workspace=workspace, name=device.native, provider_id=provider)
        metadata = {k: v for k, v in labels.items() if v}
        tasks = []
        for index, (program, meta) in enumerate(programs):
            with self._errors(f"submit to {device.native}"):
                job = target.submit(
                    program,
                    name=labels.get("qsched_job_id") or "qsched",
                    shots=shots,
                    metadata=metadata,
                    tags=["qsched"],
                )
            status = _status(job.details)
            tasks.append(NativeTask(job.id, [index], meta, STATES.get(status, QUEUED), status))
        return tasks

    def _job(self, native_id: str):
        with self._errors(f"get job {native_id}"):
            return self.workspace().get_job(native_id)

    def status(self, task) -> StatusUpdate:
        details = self._job(task.native_id).details
        status = _status(details)
        return StatusUpdate(STATES.get(status, QUEUED), status, _error_text(details), 0)

    def cancel(self, task) -> StatusUpdate:
        workspace = self.workspace()
        job = self._job(task.native_id)
        with self._errors(f"cancel job {task.native_id}"):
            job = workspace.cancel_job(job)
        status = _status(job.details)
        return StatusUpdate(STATES.get(status, RUNNING), status, "cancel requested", 0)

    def result(self, task) -> TaskResultData:
        job = self._job(task.native_id)
        details = job.details
        if STATES.get(_status(details)) != COMPLETED:
            raise ProviderError(
                "PROVIDER_ERROR", f"azure: job {task.native_id} is {details.status}, not done"
            )
        with self._errors(f"download the results of {task.native_id}"):
            results = job.get_results()
        if not isinstance(results, dict):
            raise ProviderError("PROVIDER_ERROR", f"azure: job {task.native_id}: results are not JSON")
        meta = task.meta
        try:
            if meta["format"] == "ionq":
                measured = {int(q): c for q, c in meta["measured"].items()}
                counts = marginal_counts(
                    results["histogram"], task.shots, meta["qubits"], measured, meta["clbits"]
                )
            else:
                counts = shots_to_counts(results, [tuple(r) for r in meta["registers"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProviderError(
                "PROVIDER_ERROR", f"azure: job {task.native_id}: unexpected results ({exc})"
            ) from None
        begin, end = details.begin_execution_time, details.end_execution_time
        seconds = (end - begin).total_seconds() if begin and end else 0.0
        info = {
            "target": details.target,
            "provider_id": details.provider_id,
            "status": _status(details),
            "job_name": details.name,
            "creation_time": _iso(details.creation_time),
            "begin_execution_time": _iso(begin),
            "end_execution_time": _iso(end),
        }
        if details.cost_estimate is not None:
            info["cost_estimate"] = {
                "currency": details.cost_estimate.currency_code,
                "estimated_total": details.cost_estimate.estimated_total,
            }
        if details.usage is not None:
            info["usage"] = dict(details.usage)
        return TaskResultData([counts], [0], max(seconds, 0.0), info)

    def stop(self) -> None:
        with self._lock:
            if self._workspace is not None:
                with contextlib.suppress(Exception):
                    self._workspace.close()
                self._workspace = None


def _status(details) -> str:
    """The job's status word (the SDK gives a str enum, or a plain str for values it does not know)."""
    status = details.status
    return str(getattr(status, "value", status) or "")


def _iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None


def _error_text(details) -> str:
    error = details.error_data
    if error is None:
        return ""
    return f"{error.code or ''}: {error.message or ''}".strip(": ")


def _reason(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "code", None):
        return f"{error.code}: {error.message}"
    return exc.reason or type(exc).__name__
