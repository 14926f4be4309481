"""Who may book what on the calendar, the audit of it, and the clock that opens and ends windows.

Roles: any user books an `exclusive` window for themselves, within the quota (a window of at
most `max_user_hours`, at most `max_user_windows` not yet ended); an operator books any kind for
anyone and is not held to the quota; `calibration` and `maintenance` windows need an operator.
A window is cancelled by whoever booked it or an operator. Every booking and cancel is audited."""

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
from qsched_scheduler.errors import InvalidArgument
from qsched_scheduler.scheduler import Scheduler

log = logging.getLogger(__name__)

# The longest a ticker sleeps without looking at the clock (a changed calendar wakes it sooner).
MAX_TICK_S = 30.0


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


def wire(calendar: Calendar, scheduler: Scheduler) -> None:
    """The calendar's changes reach the dispatchers; hard ends cancel what still runs."""

    def changed(device: str) -> None:
        scheduler.reconsider(device, "the device's calendar changed")

    async def hard_end(window: Window) -> None:
        running = await scheduler.running_on(window.device)
        if running is None or running.start_time is None or running.start_time < window.start:
            return  # only a run that started inside the window is the window's to stop
        log.info("hard end of %s: cancelling %s", window.reservation_id, running.job_id)
        await scheduler.cancel(running.job_id, f"reservation {window.reservation_id} ended (hard end)")

    calendar.on_change(changed)
    calendar.on_hard_end(hard_end)


class CalendarTicker:
    """Ticks the calendar at each window boundary (and at least every MAX_TICK_S)."""

    def __init__(self, calendar: Calendar, clock: Callable[[], datetime]):
        self._calendar = calendar
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        calendar.on_change(lambda device: self._wake.set())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="calendar")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._calendar.tick()
            except Exception:  # a failed cancel must not stop the calendar
                log.exception("calendar tick failed")
            now = self._clock()
            boundary = self._calendar.next_boundary(now)
            wait = MAX_TICK_S if boundary is None else min(MAX_TICK_S, (boundary - now).total_seconds())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, wait))
