"""Scenario `calibration_gate` (issue 14): what the calibration-freshness gate adds to a dispatch
decision with 10,000 jobs queued on a device. In process, on the scheduler's own policy and queue
index (the stack is not involved): `QueuePolicy.next_runs` for one staging batch, with and without
the gate, while every calibration is fresh (every job passes) and while a required one is stale
(every user job is held; the recalibration is handed over, so the walk stops at the first)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.stats import summary
from qsched_scheduler.calibration import definitions as defs
from qsched_scheduler.calibration.gate import CalibrationGate
from qsched_scheduler.calibration.manager import CALIBRATOR, Calibrations
from qsched_scheduler.calibration.state import CalibrationState, MemoryCalibrationStore, Status
from qsched_scheduler.domain import MAX_PRIORITY, JobKind, QueuedJob
from qsched_scheduler.policy import DeviceHoldGate, PriorityFifo, QueuePolicy
from qsched_scheduler.queue_index import DeviceQueue

DEFINITIONS = """
calibrations:
  qubit_freq: {experiment: {class: QubitSpectroscopyExperiment}, fresh_for_s: 21600}
  rabi:
    experiment: {class: AmplitudeRabiExperiment}
    fresh_for_s: 3600
    depends_on: [qubit_freq]
    required: true
"""
QUEUED = 10_000
BATCH = 8  # runs staged per decision


class _View:
    device = "qick"
    hold = None

    def __init__(self, queue: DeviceQueue, now: datetime, on_board: tuple[str, ...]):
        self._queue, self.now, self.on_board = queue, now, on_board

    def waiting(self):
        return self._queue.unstaged()

    def ahead_of(self, job_id: str) -> int:
        return max(0, self._queue.position(job_id) - 1)


def _decide(
    policy: QueuePolicy, queue: DeviceQueue, now: datetime, on_board: tuple[str, ...], n: int
) -> list[float]:
    samples = []
    for i in range(n):
        view = _View(queue, now + timedelta(microseconds=i), on_board)  # a new decision each time
        t0 = time.perf_counter()
        policy.next_runs(view, BATCH)
        samples.append(time.perf_counter() - t0)
    return samples


def calibration_gate(stack: Any, clients: Any, sizes: Any) -> dict[str, Any]:
    n = 50 if getattr(sizes, "dispatch_samples", 60) < 10 else 500
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    calibrations = Calibrations(MemoryCalibrationStore(), definitions=defs.parse(DEFINITIONS))
    for name in ("qubit_freq", "rabi"):
        calibrations._states[("qick", name)] = CalibrationState(
            "qick", name, Status.FRESH, "JOB-0", now, now, now + timedelta(hours=1)
        )
    plain = QueuePolicy(PriorityFifo(), [DeviceHoldGate()])
    gated = QueuePolicy(PriorityFifo(), [DeviceHoldGate(), CalibrationGate(calibrations)])
    queue = DeviceQueue(plain.key)
    for i in range(QUEUED):
        queue.put(QueuedJob(f"JOB-{i}", "qick", 0, i + 1, "alice", JobKind.LAB_EXPERIMENT))
    without = _decide(plain, queue, now, (), n)
    fresh = _decide(gated, queue, now, (), n)
    # Rabi stale, its recalibration handed over to the executor: every user job waits.
    later = now + timedelta(hours=2)
    calibrations._active = {("qick", "rabi")}
    calibrations._jobs = {"JOB-CAL": ("qick", "rabi")}
    calibrations._version += 1
    calibrations.request = lambda *a, **k: []  # type: ignore[method-assign]
    stale = _decide(gated, queue, later, ("JOB-CAL",), n)
    # ...and while the recalibration itself still waits in the queue (ahead of them).
    queue.put(QueuedJob("JOB-CAL", "qick", MAX_PRIORITY, QUEUED + 1, CALIBRATOR, JobKind.LAB_EXPERIMENT))
    calibrations._states[("qick", "qubit_freq")] = CalibrationState(
        "qick", "qubit_freq", Status.FRESH, "JOB-0", later, later, later + timedelta(hours=6)
    )
    calibrations._version += 1
    waiting = _decide(gated, queue, later, (), n)
    overhead = [max(0.0, f - w) for f, w in zip(fresh, without, strict=True)]
    metrics = {
        "dispatch_without_gate_ms": summary(without, 1e3),
        "dispatch_fresh_ms": summary(fresh, 1e3),
        "gate_overhead_ms": summary(overhead, 1e3),
        "dispatch_all_held_ms": summary(stale, 1e3),
        "dispatch_chain_waiting_ms": summary(waiting, 1e3),
    }
    return {
        "completed": True,
        "errors": 0,
        "error_samples": [],
        "metrics": metrics,
        "notes": f"{QUEUED} queued on one device, {n} decisions of {BATCH} runs each, in process",
    }
