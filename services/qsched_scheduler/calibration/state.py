"""What is known of each calibration on each device, and the narrow store that keeps it (the
memory store here; SqlCalibrationStore in sql_store.py, table calibration_states)."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol


class Status(enum.Enum):
    NEVER = "NEVER"  # no passing run yet
    FRESH = "FRESH"  # the last run passed; fresh until fresh_until (STALE after: derived, not stored)
    RUNNING = "RUNNING"  # a recalibration job is queued or running, or its result is being applied
    FAILED = "FAILED"  # the last run failed or did not pass its acceptance check


@dataclass(frozen=True)
class CalibrationState:
    device: str
    name: str
    status: Status = Status.NEVER
    job_id: str = ""  # the recalibration job of a RUNNING state, else the last one
    last_run_time: datetime | None = None  # when the last run ended
    passed_time: datetime | None = None  # when the last passing run ended
    fresh_until: datetime | None = None
    revision_id: str = ""  # the hardware-config revision the last pass pushed
    values: dict[str, float] = field(default_factory=dict)  # its fit results
    failures: int = 0  # failed runs in a row
    last_error: str = ""

    def fresh_at(self, now: datetime, max_age_s: float = 0.0) -> bool:
        """A passing result that is still fresh (and no older than `max_age_s`, when given)."""
        if self.passed_time is None or self.fresh_until is None or now >= self.fresh_until:
            return False
        return not max_age_s or (now - self.passed_time).total_seconds() < max_age_s

    def shown_status(self, now: datetime) -> str:
        """FRESH turns STALE with time; what `qsched calibrations` shows."""
        if self.status is Status.FRESH and not self.fresh_at(now):
            return "STALE"
        return self.status.value


class CalibrationStore(Protocol):
    def calibration_states(self) -> list[CalibrationState]: ...

    def put_calibration_state(self, state: CalibrationState) -> None: ...


class MemoryCalibrationStore:
    def __init__(self) -> None:
        self._states: dict[tuple[str, str], CalibrationState] = {}
        self._lock = threading.Lock()

    def calibration_states(self) -> list[CalibrationState]:
        with self._lock:
            return [replace(s, values=dict(s.values)) for _, s in sorted(self._states.items())]

    def put_calibration_state(self, state: CalibrationState) -> None:
        with self._lock:
            self._states[(state.device, state.name)] = replace(state, values=dict(state.values))
