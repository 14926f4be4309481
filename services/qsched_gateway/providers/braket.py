"""`braket`: Amazon Braket through amazon-braket-sdk.

- `braket:local_sv`, `braket:local_dm`: the SDK's LocalSimulator (state vector, density matrix),
  offline. A local task runs inside Submit (in a worker thread) and its result is stored in the registry
  at once, so it survives restarts.
- `braket:<device ARN>` (e.g. arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1): AwsDevice; one quantum
  task per circuit; status with queue position, cancel, results from the task. Credentials are the AWS
  SDK's usual chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN], AWS_PROFILE, …); the
  region comes from the ARN. Results land in the S3 location of QSCHED_BRAKET_S3_BUCKET /
  QSCHED_BRAKET_S3_PREFIX (default: the SDK's default bucket)."""

from __future__ import annotations

import os
import time
import uuid

import braket._sdk as braket_sdk
from braket.devices import LocalSimulator

from qsched_benchmarks.devices import DeviceInfo
from qsched_gateway.errors import unknown_device
from qsched_gateway.providers.base import Adapter, NativeTask, StatusUpdate
from qsched_gateway.providers.braket_convert import counts_to_qiskit, to_braket
from qsched_gateway.registry import CANCELLED, COMPLETED, FAILED, QUEUED, RUNNING, TaskResultData

LOCAL = {"local_sv": "braket_sv", "local_dm": "braket_dm"}
STATES = {
    "CREATED": QUEUED,
    "QUEUED": QUEUED,
    "RUNNING": RUNNING,
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "CANCELLING": RUNNING,
    "CANCELLED": CANCELLED,
}
# USD list prices (aws.amazon.com/braket/pricing, 2025): per task, and per shot by QPU vendor.
TASK_PRICE = 0.30
SHOT_PRICE = {"ionq": 0.08, "iqm": 0.00145, "rigetti": 0.0009, "quera": 0.01, "aqt": 0.0235}


class BraketAdapter(Adapter):
    name = "braket"
    poll_interval = 10.0
    offline_capability = "LocalSimulator (braket_sv, braket_dm)"
    credential_variables = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")

    def sdk_version(self) -> str:
        return f"amazon-braket-sdk {braket_sdk.__version__}"

    def configured(self) -> tuple[bool, str]:
        source = self.credentials.source(*self.credential_variables)
        # local simulators need no account; the flag says whether AWS devices can be used
        return True, source if source != "none" else "not needed (local simulators only)"

    def _aws_configured(self) -> bool:
        return self.credentials.source(*self.credential_variables) != "none"

    def _local_info(self, native: str) -> DeviceInfo:
        sim = LocalSimulator(LOCAL[native])
        return DeviceInfo(
            "braket",
            native,
            sim.properties.paradigm.qubitCount,
            simulator=True,
            basis_gates=sorted(
                o for o in sim.properties.action["braket.ir.openqasm.program"].supportedOperations
            ),
            description=f"amazon-braket-sdk LocalSimulator({LOCAL[native]!r})",
            version=braket_sdk.__version__,
        )

    def _aws_device(self, arn: str):
        from braket.aws import AwsDevice, AwsSession

        region = arn.split(":")[3] or os.environ.get("AWS_REGION", "us-east-1")
        import boto3

        session = AwsSession(boto_session=boto3.Session(region_name=region))
        return AwsDevice(arn, aws_session=session)

    def list_devices(self) -> list[DeviceInfo]:
        devices = [self._local_info(n) for n in LOCAL]
        if self._aws_configured():
            from braket.aws import AwsDevice

            for device in AwsDevice.get_devices(statuses=["ONLINE", "OFFLINE", "RETIRED"]):
                devices.append(self._aws_info(device))
        return devices

    def _aws_info(self, device) -> DeviceInfo:
        topology = getattr(device, "topology_graph", None)
        coupling = [tuple(e) for e in topology.edges] if topology is not None else []
        qubits = (
            getattr(device.properties.paradigm, "qubitCount", 0)
            if hasattr(device.properties, "paradigm")
            else 0
        )
        return DeviceInfo(
            "braket",
            device.arn,
            int(qubits),
            coupling=coupling,
            simulator=device.type.value == "SIMULATOR" if hasattr(device.type, "value") else False,
            status=str(device.status),
            description=f"{device.provider_name} {device.name}",
        )

    def runs_here(self, device: DeviceInfo) -> bool:
        return device.native in LOCAL

    def device(self, native: str) -> DeviceInfo:
        if native in LOCAL:
            return self._local_info(native)
        if not native.startswith("arn:aws:braket:"):
            raise unknown_device(f"braket:{native}", "use local_sv, local_dm or a Braket device ARN")
        if not self._aws_configured():
            from qsched_gateway.errors import not_configured

            raise not_configured("braket", "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        return self._aws_info(self._aws_device(native))

    def tasks_for(self, circuits: int) -> int:
        return circuits  # one quantum task per circuit

    def cost(self, device, per_circuit, tasks):
        if device.native in LOCAL:
            return 0.0, "", "local simulator: free"
        vendor = device.native.split("/")[-2].lower() if "/qpu/" in device.native else ""
        if vendor not in SHOT_PRICE:
            return 0.0, "", "managed simulators are billed per minute; no estimate"
        shots = sum(c.shots for c in per_circuit)
        cost = tasks * TASK_PRICE + shots * SHOT_PRICE[vendor]
        return (
            cost,
            "USD",
            f"Braket list price: {TASK_PRICE} USD/task + {SHOT_PRICE[vendor]} USD/shot ({vendor})",
        )

    def submit(self, device, circuits, shots, options, labels) -> list[NativeTask]:
        converted = [(to_braket(c), c.num_clbits) for c in circuits]
        if device.native in LOCAL:
            sim = LocalSimulator(LOCAL[device.native])
            counts = []
            seconds = 0.0
            ids = []
            for (bc, order, clbits), width in converted:
                started = time.perf_counter()
                task = sim.run(bc, shots=shots)
                result = task.result()
                seconds += time.perf_counter() - started
                mapping = dict(zip(order, clbits, strict=True))
                counts.append(
                    counts_to_qiskit(result.measurement_counts, result.measured_qubits, mapping, width)
                )
                ids.append(task.id)
            native_id = f"local-{uuid.uuid4().hex}"
            data = TaskResultData(
                counts,
                list(range(len(counts))),
                seconds,
                {"simulator": LOCAL[device.native], "braket_local_task_ids": ids, "shots": shots},
            )
            registry = self.registry

            def store() -> None:  # once the task is in the registry: results survive restarts
                data.circuit_indices = registry.task(f"braket/{native_id}").circuit_indices
                registry.save_result(f"braket/{native_id}", data)

            return [
                NativeTask(
                    native_id, list(range(len(counts))), {"local": True}, COMPLETED, "COMPLETED", launch=store
                )
            ]
        aws = self._aws_device(device.native)
        tasks = []
        for index, ((bc, order, clbits), width) in enumerate(converted):
            kwargs = {"shots": shots, "tags": {k: v for k, v in labels.items() if v}}
            bucket = os.environ.get("QSCHED_BRAKET_S3_BUCKET")
            if bucket:
                kwargs["s3_destination_folder"] = (
                    bucket,
                    os.environ.get("QSCHED_BRAKET_S3_PREFIX", "qsched"),
                )
            task = aws.run(bc, **kwargs)
            tasks.append(
                NativeTask(
                    task.id,
                    [index],
                    {"measured_order": order, "clbits": clbits, "num_clbits": width},
                    QUEUED,
                    "CREATED",
                )
            )
        return tasks

    def result(self, task) -> TaskResultData:
        if task.meta.get("local"):
            raise RuntimeError("local Braket result missing from the registry")
        from braket.aws import AwsQuantumTask

        result = AwsQuantumTask(task.native_id).result()
        mapping = dict(zip(task.meta["measured_order"], task.meta["clbits"], strict=True))
        counts = counts_to_qiskit(
            result.measurement_counts, result.measured_qubits, mapping, task.meta["num_clbits"]
        )
        meta = result.task_metadata
        info = {"task_arn": task.native_id, "created_at": str(meta.createdAt), "ended_at": str(meta.endedAt)}
        return TaskResultData([counts], [0], 0.0, info)  # Braket reports no device execution time

    def status(self, task) -> StatusUpdate:
        from braket.aws import AwsQuantumTask

        aws_task = AwsQuantumTask(task.native_id)
        state = aws_task.state()
        position = 0
        message = ""
        if state == "QUEUED":
            try:
                info = aws_task.queue_position()
                position = int(info.queue_position) if str(info.queue_position).isdigit() else 0
                message = info.message or ""
            except Exception:
                position = 0
        if state in ("FAILED", "CANCELLED"):
            message = aws_task.metadata().get("failureReason", "")
        return StatusUpdate(STATES.get(state, QUEUED), state, message, position)

    def cancel(self, task) -> StatusUpdate:
        from braket.aws import AwsQuantumTask

        aws_task = AwsQuantumTask(task.native_id)
        aws_task.cancel()
        return StatusUpdate(
            CANCELLED if aws_task.state() == "CANCELLED" else RUNNING, aws_task.state(), "cancel requested"
        )
