"""Storage for queue control: device holds, and the count of one owner's queued jobs
(for the per-user quota). Kept apart from the job store: rarely written, never on the
dispatch path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from qsched_core.sql import read_only
from qsched_scheduler.domain import JobState
from qsched_scheduler.store.models import DeviceHoldRow, JobRow


@dataclass(frozen=True)
class Hold:
    device: str
    mode: str  # "PAUSED" or "DRAINING"
    reason: str
    held_by: str
    hold_time: datetime


class ControlStore(Protocol):
    def holds(self) -> list[Hold]: ...
    def put_hold(self, hold: Hold) -> None: ...
    def remove_hold(self, device: str) -> None: ...
    def queued_count_of(self, owner: str) -> int: ...


class SqlControlStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._reader = read_only(engine)

    def holds(self) -> list[Hold]:
        with Session(self._reader) as session:
            return [
                Hold(r.device, r.mode, r.reason, r.held_by, r.hold_time)
                for r in session.scalars(select(DeviceHoldRow))
            ]

    def put_hold(self, hold: Hold) -> None:
        with Session(self._engine) as session, session.begin():
            session.merge(
                DeviceHoldRow(
                    device=hold.device,
                    mode=hold.mode,
                    reason=hold.reason,
                    held_by=hold.held_by,
                    hold_time=hold.hold_time,
                )
            )

    def remove_hold(self, device: str) -> None:
        with Session(self._engine) as session, session.begin():
            session.execute(delete(DeviceHoldRow).where(DeviceHoldRow.device == device))

    def queued_count_of(self, owner: str) -> int:
        query = select(func.count()).where(JobRow.owner == owner, JobRow.state == JobState.QUEUED.value)
        with Session(self._reader) as session:
            return session.scalar(query) or 0


class MemoryControlStore:
    """The in-memory fake for unit tests; `queued` maps owner -> queued jobs already stored."""

    def __init__(self, queued: dict[str, int] | None = None):
        self._holds: dict[str, Hold] = {}
        self.queued = dict(queued or {})

    def holds(self) -> list[Hold]:
        return list(self._holds.values())

    def put_hold(self, hold: Hold) -> None:
        self._holds[hold.device] = hold

    def remove_hold(self, device: str) -> None:
        self._holds.pop(device, None)

    def queued_count_of(self, owner: str) -> int:
        return self.queued.get(owner, 0)
