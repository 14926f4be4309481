"""Gateway domain objects <-> qsched.gateway.v1 messages."""

from __future__ import annotations

from qsched.api.gateway.v1 import gateway_pb2 as pb
from qsched.wire import timestamp
from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.errors import InvalidArgument
from qsched_gateway.gateway import Workload
from qsched_gateway.providers.base import Options
from qsched_gateway.registry import TaskRecord

STATE_TO_PB = {
    "QUEUED": pb.TASK_STATE_QUEUED,
    "RUNNING": pb.TASK_STATE_RUNNING,
    "COMPLETED": pb.TASK_STATE_COMPLETED,
    "FAILED": pb.TASK_STATE_FAILED,
    "CANCELLED": pb.TASK_STATE_CANCELLED,
}
DEVICE_STATUS = {
    "ONLINE": pb.DEVICE_STATUS_ONLINE,
    "AVAILABLE": pb.DEVICE_STATUS_ONLINE,
    "OFFLINE": pb.DEVICE_STATUS_OFFLINE,
    "UNAVAILABLE": pb.DEVICE_STATUS_OFFLINE,
    "RETIRED": pb.DEVICE_STATUS_OFFLINE,
    "PAUSED": pb.DEVICE_STATUS_PAUSED,
    "RESERVED": pb.DEVICE_STATUS_PAUSED,
    "MAINTENANCE": pb.DEVICE_STATUS_PAUSED,
}


def workload_from_pb(workload: pb.Workload) -> Workload:
    which = workload.WhichOneof("workload")
    if which == "circuits":
        c = workload.circuits
        o = c.options
        options = Options(
            optimization_level=o.optimization_level if o.HasField("optimization_level") else 1,
            seed_transpiler=o.seed_transpiler if o.HasField("seed_transpiler") else 7,
            seed_simulator=o.seed_simulator if o.HasField("seed_simulator") else None,
        )
        if not 0 <= options.optimization_level <= 3:
            raise InvalidArgument("INVALID_PROGRAM", "optimization_level must be 0-3")
        return Workload("circuits", list(c.qasm), list(c.qpy), c.shots, options)
    if which == "benchmark_config_json":
        return Workload("benchmark", config_json=workload.benchmark_config_json)
    if which == "suite_json":
        return Workload("suite", config_json=workload.suite_json)
    raise InvalidArgument(
        "NO_WORKLOAD", "workload is empty: give circuits, benchmark_config_json or suite_json"
    )


def device_to_pb(device: DeviceInfo) -> pb.ProviderDevice:
    return pb.ProviderDevice(
        name=device.name,
        provider=device.provider,
        qubits=device.qubits,
        coupling=[pb.QubitPair(a=a, b=b) for a, b in device.coupling],
        simulator=device.simulator,
        status=device.status,
        device_status=DEVICE_STATUS.get(device.status.upper(), pb.DEVICE_STATUS_UNKNOWN),
        basis_gates=device.basis_gates,
        noise_model=device.noise_model,
        pending_tasks=device.pending_tasks,
        description=device.description,
    )


def status_to_pb(record: TaskRecord) -> pb.TaskStatus:
    return pb.TaskStatus(
        task_id=record.task_id,
        state=STATE_TO_PB.get(record.state, pb.TASK_STATE_UNSPECIFIED),
        queue_position=record.queue_position,
        message=record.message,
        time=timestamp(record.updated),
        provider_status=record.provider_status,
        provider_task_id=record.native_id,
        device=record.device,
    )
