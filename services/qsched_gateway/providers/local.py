"""`local`: qiskit-aer, ideal (`local:aer_simulator`) and with the noise model of an IBM fake backend
(`local:fake_<name>`, from qiskit-ibm-runtime's fake provider snapshots).

Simulations run in a thread pool (`workers` at a time) so the asyncio server never blocks; each thread
runs its simulation in a worker process capped at the memory budget (simulation.py), so one
simulation that needs too much fails alone while the gateway keeps serving. Tasks and results live in
the registry: a restarted gateway still answers for finished tasks and reports tasks that were in
flight when it stopped as FAILED ("lost")."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from qsched_benchmarks.devices import IDEAL, DeviceInfo, fake_backend, local_device, local_devices
from qsched_gateway import simulation
from qsched_gateway.limits import limits_for
from qsched_gateway.providers.base import Adapter, NativeTask, Options, StatusUpdate
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
        # Each simulation in a worker process capped at the memory budget (simulation.py), unless
        # QSCHED_GATEWAY_SIM_ISOLATION=thread (no cap: for debugging).
        self.isolation = os.environ.get("QSCHED_GATEWAY_SIM_ISOLATION", "process")
        self.memory_budget_bytes = limits_for(self.name).memory_budget_bytes
        self._local = threading.local()  # each pool thread's own worker process
        self._workers: list[simulation.Worker] = []
        self._running: dict[str, simulation.Worker] = {}

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

    def runs_here(self, device: DeviceInfo) -> bool:
        return True

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
            if self.isolation == "process":
                worker = self._worker()
                with self._lock:
                    if native_id in self._cancel_requested:
                        raise simulation.Cancelled()
                    self._running[native_id] = worker
                outcome = worker.run(native, circuits, shots, options)
            else:
                outcome = self._simulate_here(native, circuits, shots, options)
            counts, elapsed, metadata = outcome.counts, outcome.elapsed, outcome.metadata
            with self._lock:
                cancelled = native_id in self._cancel_requested
            if cancelled:
                self._registry.update(task_id, CANCELLED, provider_status="CANCELLED", message="cancelled")
            else:
                indices = self._registry.task(task_id).circuit_indices  # submission-wide indices
                self._registry.save_result(task_id, TaskResultData(counts, indices, float(elapsed), metadata))
                self._registry.update(task_id, COMPLETED, provider_status="DONE", message="")
        except simulation.Stopped:
            return
        except simulation.Cancelled:
            self._registry.update(task_id, CANCELLED, provider_status="CANCELLED", message="cancelled")
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
                self._running.pop(native_id, None)
                self._cancel_requested.discard(native_id)
            self._notify()

    def _worker(self) -> simulation.Worker:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = simulation.Worker(self.memory_budget_bytes)
            with self._lock:
                self._workers.append(worker)
        return worker

    def _simulate_here(self, native: str, circuits: list, shots: int, options: Options) -> simulation.Outcome:
        """In a thread of the gateway itself (QSCHED_GATEWAY_SIM_ISOLATION=thread): no memory cap."""
        return simulation.simulate(native, circuits, shots, options, self._simulator(native))

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
                worker = self._running.get(task.native_id)
                if worker is not None:  # an isolated simulation stops at once
                    worker.kill()
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
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()
