"""Who may book what on the calendar and open sessions, the audit of it, the wiring of both to
the engine, and the clock that opens and ends windows and sessions.

Roles: any user books an `exclusive` window for themselves, within the quota (a window of at
most `max_user_hours`, at most `max_user_windows` not yet ended); an operator books any kind for
anyone and is not held to the quota; `calibration` and `maintenance` windows need an operator.
A window is cancelled by whoever booked it or an operator. Any user opens a session for themselves
(at most `max_user_hours` long); its owner or an operator closes or cancels it. Every booking,
cancel, session open, close and cancel is audited."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from qsched_core.errors import PermissionDenied, QuotaExceeded
from qsched_core.principal import Principal, Role
from qsched_identity.audit import AuditLog
from qsched_scheduler.calendar import Calendar, NewWindow, Window, WindowKind
from qsched_scheduler.domain import JobState
from qsched_scheduler.errors import InvalidArgument
from qsched_scheduler.fair_share import Usage
from qsched_scheduler.scheduler import Scheduler
from qsched_scheduler.sessions import FailurePolicy, Session, Sessions

log = logging.getLogger(__name__)

# The longest a ticker sleeps without looking at the clock (a changed calendar wakes it sooner).
MAX_TICK_S = 30.0


@dataclass(frozen=True)
class UsageView:
    """What ListUsage shows: fair share's usage and the devices set to fair share."""

    usage: Usage
    fair_share_devices: list[str]


@dataclass(frozen=True)
class CalendarQuota:
    max_user_hours: float = 4.0
    max_user_windows: int = 3


class ReservationDesk:
    def __init__(
        self,
        calendar: Calendar,
        known_device: Callable[[str], bool],
        audit: AuditLog | None = None,
        quota: CalendarQuota = CalendarQuota(),
    ):
        self._calendar = calendar
        self._known = known_device
        self._audit = audit or AuditLog(None)
        self._quota = quota

    async def create(self, who: Principal, new: NewWindow) -> Window:
        operator = who.has(Role.OPERATOR)
        if not self._known(new.device):
            raise InvalidArgument("UNKNOWN_DEVICE", f"no lab device {new.device!r}", field="device")
        if new.kind is WindowKind.EXCLUSIVE and not new.holders:
            new = replace(new, holders=(who.name,))
        if not operator:
            if new.kind is not WindowKind.EXCLUSIVE:
                raise PermissionDenied(
                    "OPERATOR_REQUIRED", f"{new.kind.value.lower()} windows are booked by an operator"
                )
            if set(new.holders) != {who.name}:
                raise PermissionDenied("OPERATOR_REQUIRED", "users book exclusive windows for themselves")
            if new.end - new.start > timedelta(hours=self._quota.max_user_hours):
                raise QuotaExceeded(
                    "RESERVATION_TOO_LONG",
                    f"a user's window is at most {self._quota.max_user_hours:g} h",
                    subject=who.name,
                )
            mine = [w for w in self._calendar.windows() if w.created_by == who.name]
            if len(mine) >= self._quota.max_user_windows:
                raise QuotaExceeded(
                    "TOO_MANY_RESERVATIONS",
                    f"at most {self._quota.max_user_windows} windows not yet ended per user",
                    subject=who.name,
                )
        window = await asyncio.to_thread(self._calendar.create, new, who.name)
        await self._audit.record(
            who,
            "reservation.create",
            window.reservation_id,
            device=window.device,
            kind=window.kind.value,
            start=window.start.isoformat(),
            end=window.end.isoformat(),
            holders=",".join(window.holders),
        )
        return window

    async def cancel(self, who: Principal, reservation_id: str) -> Window:
        window = self._calendar.get(reservation_id)
        if window is not None and window.created_by != who.name and not who.has(Role.OPERATOR):
            raise PermissionDenied("NOT_YOUR_RESERVATION", f"{reservation_id} is {window.created_by}'s")
        cancelled = await asyncio.to_thread(self._calendar.cancel, reservation_id, who.name)
        await self._audit.record(
            who, "reservation.cancel", reservation_id, device=cancelled.device, booked_by=cancelled.created_by
        )
        return cancelled

    def list(self, device: str = "") -> list[Window]:
        return self._calendar.windows(device)

    def on_device(self, device: str) -> tuple[Window | None, Window | None]:
        """The window open on the device now and the next one (the device view shows both)."""
        return self._calendar.now_and_next(device)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _on_loop(scheduler: Scheduler, why: str) -> Callable[[str], None]:
    """`scheduler.reconsider(device, why)` on the engine's event loop. Bookings and sessions are
    written off the loop (asyncio.to_thread) and tell their listeners from there: reconsidering a
    device there failed with "no running event loop" when it had staged runs to take back."""
    loop = _running_loop()

    def changed(device: str) -> None:
        if loop is None or _running_loop() is loop:
            scheduler.reconsider(device, why)
        else:
            loop.call_soon_threadsafe(scheduler.reconsider, device, why)

    return changed


def wire(calendar: Calendar, scheduler: Scheduler) -> None:
    """The calendar's changes reach the dispatchers; hard ends cancel what still runs. Call it
    on the engine's event loop."""
    changed = _on_loop(scheduler, "the device's calendar changed")

    async def hard_end(window: Window) -> None:
        running = await scheduler.running_on(window.device)
        if running is None or running.start_time is None or running.start_time < window.start:
            return  # only a run that started inside the window is the window's to stop
        log.info("hard end of %s: cancelling %s", window.reservation_id, running.job_id)
        await scheduler.cancel(running.job_id, f"reservation {window.reservation_id} ended (hard end)")

    calendar.on_change(changed)
    calendar.on_hard_end(hard_end)


class SessionDesk:
    def __init__(
        self,
        sessions: Sessions,
        known_device: Callable[[str], bool],
        audit: AuditLog | None = None,
        quota: CalendarQuota = CalendarQuota(),
    ):
        self._sessions = sessions
        self._known = known_device
        self._audit = audit or AuditLog(None)
        self._quota = quota

    async def open(
        self,
        who: Principal,
        device: str,
        max_length: timedelta,
        idle_timeout: timedelta,
        policy: FailurePolicy,
    ) -> Session:
        if not self._known(device):
            raise InvalidArgument("UNKNOWN_DEVICE", f"no lab device {device!r}", field="device")
        if not who.has(Role.OPERATOR) and max_length > timedelta(hours=self._quota.max_user_hours):
            raise QuotaExceeded(
                "SESSION_TOO_LONG",
                f"a user's session is at most {self._quota.max_user_hours:g} h",
                subject=who.name,
            )
        session = await asyncio.to_thread(
            self._sessions.open, device, who.name, max_length, idle_timeout, policy
        )
        await self._audit.record(
            who, "session.open", session.session_id, device=device, max_length_s=max_length.total_seconds()
        )
        return session

    def _mine(self, who: Principal, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.owner != who.name and not who.has(Role.OPERATOR):
            raise PermissionDenied("NOT_YOUR_SESSION", f"{session_id} is {session.owner}'s")

    async def close(self, who: Principal, session_id: str) -> Session:
        self._mine(who, session_id)
        session = await asyncio.to_thread(self._sessions.close, session_id)
        await self._audit.record(who, "session.close", session_id, owner=session.owner)
        return session

    async def cancel(self, who: Principal, session_id: str) -> Session:
        self._mine(who, session_id)
        session = await self._sessions.cancel(session_id, f"cancelled by {who.name}")
        await self._audit.record(who, "session.cancel", session_id, owner=session.owner)
        return session

    def list(self, device: str = "") -> list[Session]:
        return self._sessions.sessions(device)

    def on_device(self, device: str) -> Session | None:
        """The session that has the device now (the device view shows it)."""
        return self._sessions.holding_now(device)


def wire_sessions(sessions: Sessions, scheduler: Scheduler) -> None:
    """Sessions follow the engine's committed changes; their opening and end reach the dispatchers;
    a cancelled or aborted session drops its queued jobs."""

    changed = _on_loop(scheduler, "a session opened or ended")

    async def cancel(job_ids: list[str], why: str) -> None:
        for job_id in job_ids:
            job = await scheduler.get(job_id)
            if job.state is JobState.QUEUED:
                await scheduler.cancel(job_id, why)

    scheduler.bus.add_listener(sessions.observe)
    sessions.on_change(changed)
    sessions.on_cancel(cancel)


async def active_session_jobs(scheduler: Scheduler) -> list[tuple[str, str]]:
    """(job id, session id) of the jobs queued or running in a session (Sessions.load at start)."""
    out = [
        (j.job_id, j.session)
        for name in scheduler.routes.labs
        for j in scheduler.index.device(name)
        if j.session
    ]
    for name in scheduler.routes.labs:
        running = await scheduler.running_on(name)
        if running is not None and running.labels.get("session"):
            out.append((running.job_id, running.labels["session"]))
    return out


class CalendarTicker:
    """Ticks the calendar and the sessions at each boundary (and at least every MAX_TICK_S)."""

    def __init__(self, calendar: Calendar, clock: Callable[[], datetime], sessions: Sessions | None = None):
        self._calendar = calendar
        self._sessions = sessions
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        calendar.on_change(lambda device: self._wake.set())
        if sessions is not None:
            sessions.on_change(lambda device: self._wake.set())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="calendar")

    def poke(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._calendar.tick()
                if self._sessions is not None:
                    await self._sessions.tick()
            except Exception:  # a failed cancel must not stop the clock
                log.exception("calendar tick failed")
            now = self._clock()
            boundaries = [self._calendar.next_boundary(now)]
            if self._sessions is not None:
                boundaries.append(self._sessions.next_boundary(now))
            soonest = min((b for b in boundaries if b is not None), default=None)
            wait = MAX_TICK_S if soonest is None else min(MAX_TICK_S, (soonest - now).total_seconds())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.01, wait)):
                    await self._wake.wait()
