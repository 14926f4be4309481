"""CalibrationStore on the scheduler's database (table calibration_states, migration
0014_calibration)."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from qsched_scheduler.calibration.state import CalibrationState, Status
from qsched_scheduler.store.engine import read_only
from qsched_scheduler.store.models import CalibrationStateRow


class SqlCalibrationStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._reader = read_only(engine)

    def calibration_states(self) -> list[CalibrationState]:
        with Session(self._reader) as session:
            rows = session.scalars(
                select(CalibrationStateRow).order_by(CalibrationStateRow.device, CalibrationStateRow.name)
            )
            return [
                CalibrationState(
                    r.device,
                    r.name,
                    Status(r.status),
                    r.job_id,
                    r.last_run_time,
                    r.passed_time,
                    r.fresh_until,
                    r.revision_id,
                    {k: float(v) for k, v in (r.values or {}).items()},
                    r.failures,
                    r.last_error,
                )
                for r in rows
            ]

    def put_calibration_state(self, state: CalibrationState) -> None:
        with Session(self._engine) as session, session.begin():
            session.merge(
                CalibrationStateRow(
                    device=state.device,
                    name=state.name,
                    status=state.status.value,
                    job_id=state.job_id,
                    last_run_time=state.last_run_time,
                    passed_time=state.passed_time,
                    fresh_until=state.fresh_until,
                    revision_id=state.revision_id,
                    values=dict(state.values),
                    failures=state.failures,
                    last_error=state.last_error,
                )
            )
