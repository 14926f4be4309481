"""The calibration-freshness gate of the queue policy (policy.Gate): a lab job that needs a
calibration which is not fresh waits, with the calibration and the reason in its Reason; asking
queues the recalibration (manager.Calibrations.hold)."""

from __future__ import annotations

from qsched_scheduler.calibration.manager import GATE, Calibrations
from qsched_scheduler.domain import QueuedJob, Reason
from qsched_scheduler.policy import QueueView


class CalibrationGate:
    name = GATE

    def __init__(self, calibrations: Calibrations):
        self.calibrations = calibrations

    def holds(self, job: QueuedJob, view: QueueView) -> Reason | None:
        return self.calibrations.hold(job, view.device, view.now)

    def holds_rest(self, job: QueuedJob, view: QueueView) -> bool:
        return self.calibrations.holds_rest(job, view)
