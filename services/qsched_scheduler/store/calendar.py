"""Storage of the device calendars (calendar.CalendarStore on SQL): a window is one row, written
when it is booked and again when it is cancelled (cancelled rows stay, for the record); and of the
sessions (sessions.SessionStore), one row each, written when opened, closed and ended."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session as Db

from qsched_core.sql import read_only
from qsched_scheduler.calendar import Window, WindowKind
from qsched_scheduler.sessions import FailurePolicy, Session, SessionState
from qsched_scheduler.store.models import ReservationRow, SessionRow


class SqlCalendarStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._reader = read_only(engine)

    def windows(self, since: datetime) -> list[Window]:
        query = select(ReservationRow).where(
            ReservationRow.end_time > since, ReservationRow.cancelled.is_(False)
        )
        with Db(self._reader) as session:
            return [_window(row) for row in session.scalars(query)]

    def put_window(self, window: Window) -> None:
        with Db(self._engine) as session, session.begin():
            session.merge(
                ReservationRow(
                    reservation_id=window.reservation_id,
                    device=window.device,
                    kind=window.kind.value,
                    start_time=window.start,
                    end_time=window.end,
                    holders=",".join(window.holders),
                    hard_end=window.hard_end,
                    note=window.note,
                    created_by=window.created_by,
                    create_time=window.create_time,
                    cancelled=window.cancelled,
                    cancelled_by=window.cancelled_by,
                )
            )


def _window(row: ReservationRow) -> Window:
    return Window(
        row.reservation_id,
        row.device,
        WindowKind(row.kind),
        row.start_time,
        row.end_time,
        row.created_by,
        row.create_time,
        tuple(h for h in row.holders.split(",") if h),
        row.hard_end,
        row.note,
        row.cancelled,
        row.cancelled_by,
    )


class SqlSessionStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._reader = read_only(engine)

    def open_sessions(self) -> list[Session]:
        query = select(SessionRow).where(SessionRow.state != SessionState.ENDED.value)
        with Db(self._reader) as session:
            return [_session(row) for row in session.scalars(query)]

    def put_session(self, s: Session) -> None:
        with Db(self._engine) as session, session.begin():
            session.merge(
                SessionRow(
                    session_id=s.session_id,
                    device=s.device,
                    owner=s.owner,
                    state=s.state.value,
                    open_time=s.open_time,
                    max_length_s=s.max_length.total_seconds(),
                    idle_timeout_s=s.idle_timeout.total_seconds(),
                    failure_policy=s.failure_policy.value,
                    end_time=s.end_time,
                    end_reason=s.end_reason,
                )
            )


def _session(row: SessionRow) -> Session:
    return Session(
        row.session_id,
        row.device,
        row.owner,
        row.open_time,
        timedelta(seconds=row.max_length_s),
        timedelta(seconds=row.idle_timeout_s),
        FailurePolicy(row.failure_policy),
        SessionState(row.state),
        row.end_time,
        row.end_reason,
    )
