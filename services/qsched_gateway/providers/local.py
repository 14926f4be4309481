"""`local`: qiskit-aer, ideal (`local:aer_simulator`) and with the noise model of an IBM fake backend
(`local:fake_<name>`, from qiskit-ibm-runtime's fake provider snapshots).

Simulations run in a thread pool (Aer releases the GIL while it simulates) so the asyncio server never
blocks. Tasks and results live in the registry: a restarted gateway still answers for finished tasks
and reports tasks that were in flight when it stopped as FAILED ("lost")."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from qsched_benchmarks.devices import IDEAL, DeviceInfo, fake_backend, local_device, local_devices
from qsched_benchmarks.estimate import two_qubit_gate_count
from qsched_gateway.providers.base import Adapter, NativeTask, Options, StatusUpdate, bitstring_counts
from qsched_gateway.registry import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    Registry,
    TaskRecord,
    TaskResultData,
)

log = logging.getLogger(__name__)
LOST = (
    "lost: the gateway stopped while this local simulation was queued or running; "
    "local simulations do not survive a restart, submit again"
)


class LocalAdapter(Adapter):
    name = "local"
    poll_interval = 1.0
    tracks_in_registry = True
    offline_capability = "qiskit-aer simulators, ideal and with IBM fake-backend noise models"

    def __init__(self, credentials, registry: Registry, notify, workers: int = 2):
        super().__init__(credentials)
        self._registry = registry
        self._notify = notify
        # The simulation workers: `workers` threads, each running one task at a time (tasks beyond
        # that wait QUEUED in the pool's queue).
        self.workers = max(1, workers)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="qsched-local-sim")
        self._futures: dict[str, Future] = {}
        self._cancel_requested: set[str] = set()
        self._lock = threading.Lock()
        self._simulators: dict[str, object] = {}
        self._sim_lock = threading.Lock()
        self._devices: list[DeviceInfo] | None = None

    def sdk_version(self) -> str:
        import qiskit
        import qiskit_aer

        return f"qiskit {qiskit.__version__}, qiskit-aer {qiskit_aer.__version__}"

    # devices
    def list_devices(self) -> list[DeviceInfo]:
        if self._devices is None:
            self._devices = local_devices()
        return self._devices

    def device(self, native: str) -> DeviceInfo:
        return local_device(native)

    def _simulator(self, native: str):
        with self._sim_lock:
            sim = self._simulators.get(native)
            if sim is None:
                from qiskit_aer import AerSimulator

                sim = AerSimulator() if native == IDEAL else AerSimulator.from_backend(fake_backend(native))
                self._simulators[native] = sim
            return sim

    # tasks
    def submit(self, device, circuits, shots, options, labels) -> list[NativeTask]:
        native_id = uuid.uuid4().hex
        task_id = f"local/{native_id}"
        circuits = list(circuits)

        def launch() -> None:
            with self._lock:
                queued = sum(1 for f in self._futures.values() if not f.done() and not f.running())
                future = self.pool.submit(self._run, task_id, device.native, circuits, shots, options)
                self._futures[native_id] = future
            self._registry.update(task_id, QUEUED, provider_status="QUEUED", queue_position=queued + 1)

        return [
            NativeTask(native_id, list(range(len(circuits))), {"simulator": device.native}, launch=launch)
        ]

    def _run(self, task_id: str, native: str, circuits: list, shots: int, options: Options) -> None:
        native_id = task_id.split("/", 1)[1]
        try:
            self._registry.update(task_id, RUNNING, provider_status="RUNNING", queue_position=0)
            self._notify()
            from qiskit import transpile

            sim = self._simulator(native)
            compiled = transpile(
                circuits,
                backend=sim,
                optimization_level=options.optimization_level,
                seed_transpiler=options.seed_transpiler,
            )
            started = time.perf_counter()
            run_args = {"shots": shots}
            if options.seed_simulator is not None:
                run_args["seed_simulator"] = options.seed_simulator
            result = sim.run(compiled, **run_args).result()
            elapsed = time.perf_counter() - started
            counts = [bitstring_counts(result.get_counts(i)) for i in range(len(compiled))]
            metadata = {
                "simulator": native,
                "noise_model": "" if native == IDEAL else native,
                "backend_name": result.backend_name,
                "qiskit_aer_job_id": result.job_id,
                "time_taken_seconds": getattr(result, "time_taken", elapsed),
                "transpiled_two_qubit_gate_counts": [two_qubit_gate_count(c) for c in compiled],
                "transpiled_depths": [c.depth() for c in compiled],
                "shots": shots,
            }
            with self._lock:
                cancelled = native_id in self._cancel_requested
            if cancelled:
                self._registry.update(task_id, CANCELLED, provider_status="CANCELLED", message="cancelled")
            else:
                indices = self._registry.task(task_id).circuit_indices  # submission-wide indices
                self._registry.save_result(task_id, TaskResultData(counts, indices, float(elapsed), metadata))
                self._registry.update(task_id, COMPLETED, provider_status="DONE", message="")
        except Exception as exc:  # anything the simulator raises fails this task only
            log.warning("local task %s failed: %s", task_id, exc)
            try:
                self._registry.update(
                    task_id, FAILED, provider_status="ERROR", message=f"simulation failed: {exc}"
                )
            except Exception:
                log.debug("registry closed before %s finished", task_id)
        finally:
            with self._lock:
                self._futures.pop(native_id, None)
                self._cancel_requested.discard(native_id)
            self._notify()

    def status(self, task: TaskRecord) -> StatusUpdate:
        return StatusUpdate(task.state, task.provider_status, task.message, task.queue_position)

    def cancel(self, task: TaskRecord) -> StatusUpdate:
        with self._lock:
            future = self._futures.get(task.native_id)
            if future is not None and future.cancel():
                self._futures.pop(task.native_id, None)
                record = self._registry.update(
                    task.task_id,
                    CANCELLED,
                    provider_status="CANCELLED",
                    message="cancelled before it started",
                )
            elif future is not None:
                self._cancel_requested.add(task.native_id)
                record = self._registry.update(
                    task.task_id,
                    task.state,
                    message="cancel requested: the running simulation's result will be discarded",
                )
            else:
                record = self._registry.task(task.task_id)
        self._notify()
        return StatusUpdate(record.state, record.provider_status, record.message, record.queue_position)

    def result(self, task: TaskRecord) -> TaskResultData:
        stored = self._registry.result(task.task_id)
        if stored is None:
            raise RuntimeError(f"no stored result for {task.task_id}")
        return stored

    def recover(self, registry: Registry) -> None:
        for task in registry.tasks_in_state(self.name, (QUEUED, RUNNING)):
            with self._lock:
                live = task.native_id in self._futures
            if not live:
                registry.update(task.task_id, FAILED, provider_status="LOST", message=LOST)

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
