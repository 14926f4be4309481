"""Reservations: one calendar per device, and the queue-policy gate that enforces it.

A window is `exclusive` (only its holders' jobs start inside), `calibration` (only jobs labelled
`calibration=true`) or `maintenance` (nothing starts). Windows of one device never overlap. The
gate (`ReservationGate`) holds a job back when:

- it targets a reservation (label `reservation=<id>`) that has not opened yet;
- a window that excludes it is open now;
- its estimated run would overrun the start of an upcoming window that excludes it: the job is
  estimated to start after what is on the board (one typical run each) and to take one typical
  run (the median of the device's recent successful runs, estimates.py);
- a window that excludes it opens within `EDGE_GUARD` (2 s) and anything is on the board, or its
  estimated end is less than `START_MARGIN` (0.5 s) before the opening: so close to the opening
  it starts only on an idle board and with time to spare for the hand-over, and the jobs behind
  it wait with it (`holds_rest`: the queue keeps its order, one run at a time). A run staged
  behind others starts when they end, which can be inside the window when they overran their
  estimate; the calendar's ticker takes such staged runs back `EDGE_GUARD` before the opening (a
  boundary of its own), ahead of the race between the opening's take-back and the executor
  starting them.

A window's end stops new starts (the gate lets the normal queue through again); a job still
running then is left to finish unless the window says `hard_end`, in which case `Calendar.tick`
cancels it (the executor stops between rounds). Knows nothing of gRPC or SQL."""

from __future__ import annotations

import bisect
import enum
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from qsched_core.errors import FailedPrecondition, InvalidArgument, NotFound
from qsched_scheduler.domain import QueuedJob, Reason

GATE_NAME = "reservations"
# How long before a window opens the jobs it excludes stop being staged behind other runs.
EDGE_GUARD = timedelta(seconds=2)
# ...and by how much such a job's estimated end must precede the opening: the hand-over to the
# executor takes time (tens of ms on a loaded machine; a start 41 ms into a window was measured).
START_MARGIN = timedelta(seconds=0.5)


class WindowKind(enum.Enum):
    EXCLUSIVE = "EXCLUSIVE"
    CALIBRATION = "CALIBRATION"
    MAINTENANCE = "MAINTENANCE"


@dataclass(frozen=True)
class Window:
    """One reservation of a device from `start` (inclusive) to `end` (exclusive)."""

    reservation_id: str
    device: str
    kind: WindowKind
    start: datetime
    end: datetime
    created_by: str
    create_time: datetime
    holders: tuple[str, ...] = ()  # exclusive: the users whose jobs may start inside
    hard_end: bool = False  # at the end, cancel what of it still runs
    note: str = ""
    cancelled: bool = False
    cancelled_by: str = ""

    def admits(self, job: QueuedJob) -> bool:
        if self.kind is WindowKind.EXCLUSIVE:
            return job.owner in self.holders
        if self.kind is WindowKind.CALIBRATION:
            return job.calibration
        return False

    def open_at(self, now: datetime) -> bool:
        return self.start <= now < self.end

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end

    def describe(self) -> str:
        who = f" for {', '.join(self.holders)}" if self.kind is WindowKind.EXCLUSIVE else ""
        return f"{self.kind.value.lower()} window {self.reservation_id}{who}"

    def details(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "kind": self.kind.value,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "holders": list(self.holders),
        }


@dataclass(frozen=True)
class NewWindow:
    device: str
    kind: WindowKind
    start: datetime
    end: datetime
    holders: tuple[str, ...] = ()
    hard_end: bool = False
    note: str = ""


class CalendarStore(Protocol):
    """Where windows are kept (store/calendar.py: SQL; MemoryCalendarStore: tests)."""

    def windows(self, since: datetime) -> list[Window]:
        """Windows not cancelled that end after `since`."""

    def put_window(self, window: Window) -> None: ...


class MemoryCalendarStore:
    def __init__(self) -> None:
        self.rows: dict[str, Window] = {}

    def windows(self, since: datetime) -> list[Window]:
        return [w for w in self.rows.values() if not w.cancelled and w.end > since]

    def put_window(self, window: Window) -> None:
        self.rows[window.reservation_id] = window


def overlap_refused(existing: Window) -> FailedPrecondition:
    return FailedPrecondition(
        "RESERVATION_OVERLAP",
        f"overlaps {existing.describe()} ({existing.start.isoformat()} to {existing.end.isoformat()})",
        reservation_id=existing.reservation_id,
    )


class Calendar:
    """Every device's windows in memory (loaded from the store at start, written through), and
    what happens at their boundaries (`tick`)."""

    def __init__(self, store: CalendarStore, clock: Callable[[], datetime]):
        self._store = store
        self._clock = clock
        self._by_device: dict[str, list[Window]] = {}  # by start, not cancelled, not yet ended
        self._listeners: list[Callable[[str], None]] = []
        self._hard_end: Callable[[Window], Awaitable[None]] | None = None
        self._last_tick = clock()

    # -- wiring ----------------------------------------------------------------------------------------
    def on_change(self, listener: Callable[[str], None]) -> None:
        """`listener(device)` when the device's calendar changes or one of its windows opens or ends."""
        self._listeners.append(listener)

    def on_hard_end(self, stop: Callable[[Window], Awaitable[None]]) -> None:
        """`stop(window)` when a hard-end window ends: cancel what of it still runs."""
        self._hard_end = stop

    def load(self) -> None:
        """Read the windows that have not ended (store thread or at start)."""
        now = self._clock()
        self._by_device = {}
        for window in sorted(self._store.windows(now), key=lambda w: w.start):
            self._by_device.setdefault(window.device, []).append(window)
        self._last_tick = now

    # -- reads -------------------------------------------------------------------------------------------
    def windows(self, device: str = "") -> list[Window]:
        if device:
            return list(self._by_device.get(device, ()))
        return sorted((w for ws in self._by_device.values() for w in ws), key=lambda w: (w.start, w.device))

    def get(self, reservation_id: str) -> Window | None:
        for windows in self._by_device.values():
            for window in windows:
                if window.reservation_id == reservation_id:
                    return window
        return None

    def open_window(self, device: str, now: datetime) -> Window | None:
        for window in self._by_device.get(device, ()):
            if window.start > now:
                return None
            if window.open_at(now):
                return window
        return None

    def now_and_next(self, device: str) -> tuple[Window | None, Window | None]:
        """The device's window open now (by the calendar's clock) and the next one to open."""
        now = self._clock()
        upcoming = (w for w in self._by_device.get(device, ()) if w.start > now)
        return self.open_window(device, now), next(upcoming, None)

    def calibration_window_start(self, device: str, now: datetime) -> datetime | None:
        """When the `calibration` window open on `device` now began (None: no such window open)."""
        window = self.open_window(device, now)
        return window.start if window is not None and window.kind is WindowKind.CALIBRATION else None

    def upcoming(self, device: str, now: datetime, before: datetime) -> Iterable[Window]:
        """Windows that open after `now` and before `before`, soonest first."""
        for window in self._by_device.get(device, ()):
            if window.start >= before:
                return
            if window.start > now:
                yield window

    def next_boundary(self, now: datetime) -> datetime | None:
        """The next time a window opens or ends, or comes within EDGE_GUARD of opening."""
        times = [t for ws in self._by_device.values() for w in ws for t in _boundaries(w) if t > now]
        return min(times, default=None)

    # -- commands (store calls are blocking: run them off the event loop) ------------------------------
    def create(self, new: NewWindow, created_by: str) -> Window:
        now = self._clock()
        if new.end <= new.start:
            raise InvalidArgument("INVALID_WINDOW", "a window must end after it starts", field="end")
        if new.end <= now:
            raise InvalidArgument("INVALID_WINDOW", "the window has already ended", field="end")
        if new.kind is WindowKind.EXCLUSIVE and not new.holders:
            raise InvalidArgument("INVALID_WINDOW", "an exclusive window needs a holder", field="holders")
        for window in self._by_device.get(new.device, ()):
            if window.overlaps(new.start, new.end):
                raise overlap_refused(window)
        window = Window(
            f"RES-{uuid.uuid4().hex[:12]}",
            new.device,
            new.kind,
            new.start,
            new.end,
            created_by,
            now,
            tuple(new.holders),
            new.hard_end,
            new.note,
        )
        self._store.put_window(window)
        windows = self._by_device.setdefault(window.device, [])
        bisect.insort(windows, window, key=lambda w: w.start)
        self._changed(window.device)
        return window

    def cancel(self, reservation_id: str, by: str) -> Window:
        window = self.get(reservation_id)
        if window is None:
            raise NotFound("RESERVATION_NOT_FOUND", f"no reservation {reservation_id} that has not ended")
        cancelled = replace(window, cancelled=True, cancelled_by=by)
        self._store.put_window(cancelled)
        self._by_device[window.device].remove(window)
        self._changed(window.device)
        return cancelled

    async def tick(self) -> None:
        """Look at the clock: tell listeners of every device whose window opened or ended since
        the last tick, cancel the runs of hard-end windows that ended, and forget ended windows."""
        now = self._clock()
        last = self._last_tick
        self._last_tick = now
        for device, windows in list(self._by_device.items()):
            crossed = any(last < t <= now for w in windows for t in _boundaries(w))
            ended = [w for w in windows if w.end <= now]
            if ended:
                self._by_device[device] = [w for w in windows if w.end > now]
            if crossed or ended:
                self._changed(device)
            for window in ended:
                if window.hard_end and self._hard_end is not None:
                    await self._hard_end(window)

    def _changed(self, device: str) -> None:
        for listener in self._listeners:
            listener(device)


@dataclass
class ReservationGate:
    """The calendar as a gate of the queue policy (see the module doc for the rules)."""

    calendar: Calendar
    typical_seconds: Callable[[str], float] = field(default=lambda device: 60.0)
    name: str = GATE_NAME

    def holds(self, job: QueuedJob, view: Any) -> Reason | None:
        now: datetime = view.now
        device: str = view.device
        target = self.calendar.get(job.reservation) if job.reservation else None
        if target is not None and target.device == device and target.start > now and target.admits(job):
            return Reason(
                self.name,
                f"waits for its reservation {target.reservation_id}, opening {target.start.isoformat()}",
                {"rule": "target", "window": target.details(), "not_before": target.start.isoformat()},
            )
        window = self.calendar.open_window(device, now)
        if window is not None and not window.admits(job):
            return Reason(
                self.name,
                f"{window.describe()} is open until {window.end.isoformat()}",
                {"rule": "open-window", "window": window.details(), "not_before": window.end.isoformat()},
            )
        typical = self.typical_seconds(device)
        ahead = len(view.on_board)
        start = now + timedelta(seconds=ahead * typical)
        end = start + timedelta(seconds=typical)
        for upcoming in self.calendar.upcoming(device, now, max(end, now + EDGE_GUARD)):
            if upcoming.admits(job):
                continue
            if upcoming.start >= end:  # its estimate fits: only the edge guard may hold it
                if not ahead and upcoming.start - end >= START_MARGIN:
                    continue
                return Reason(
                    self.name,
                    f"{upcoming.describe()} opens {upcoming.start.isoformat()}: within "
                    f"{EDGE_GUARD.total_seconds():g} s of it a job it excludes starts only on an idle board, "
                    f"ending {START_MARGIN.total_seconds():g} s before the opening by its estimate",
                    {"rule": "edge", "window": upcoming.details(), "not_before": upcoming.end.isoformat()},
                )
            return Reason(
                self.name,
                f"would overrun {upcoming.describe()} opening {upcoming.start.isoformat()} "
                f"(estimated {typical:.0f} s run after {ahead} on the board)",
                {
                    "rule": "overrun",
                    "window": upcoming.details(),
                    "estimated_run_seconds": typical,
                    "estimated_end": end.isoformat(),
                    "not_before": upcoming.end.isoformat(),
                },
            )
        return None

    def earliest_start(self, job: QueuedJob, device: str, start: datetime) -> datetime:
        """When `job`, estimated to start at `start`, can start by the calendar: not before its
        target reservation opens, and past every window that excludes it and would be open then or
        be overrun by a typical run (the queue view's estimates; holds() decides the actual start)."""
        target = self.calendar.get(job.reservation) if job.reservation else None
        if target is not None and target.device == device and target.admits(job):
            start = max(start, target.start)
        run = timedelta(seconds=self.typical_seconds(device))
        for window in self.calendar.windows(device):  # by start: a later one may follow a move
            if not window.admits(job) and window.end > start and window.start < start + run:
                start = window.end
        return start

    def only_owners(self, view: Any) -> frozenset[str] | None:
        """Whose jobs may start now: an open exclusive window's holders, nobody in maintenance
        (None: the calendar does not narrow it by owner; a calibration window admits by label)."""
        window = self.calendar.open_window(view.device, view.now)
        if window is None or window.kind is WindowKind.CALIBRATION:
            return None
        return frozenset(window.holders) if window.kind is WindowKind.EXCLUSIVE else frozenset()

    def holds_rest(self, job: QueuedJob, view: Any) -> bool:
        """Whether the jobs behind a job it holds wait too (the queue policy stops its walk):
        - held by the edge guard: the queue keeps its order and runs one at a time until the
          opening (the window's own jobs do not jump ahead of it);
        - held by a maintenance window, open or about to be overrun: it admits nothing, so no job
          behind can pass either (the walk would ask every queued job in vain)."""
        reason = self.holds(job, view)
        if reason is None:
            return False
        rule = reason.details.get("rule")
        window = reason.details.get("window", {})
        maintenance = window.get("kind") == WindowKind.MAINTENANCE.value
        return rule == "edge" or (maintenance and rule in ("open-window", "overrun"))

    def note(self, job: QueuedJob, view: Any) -> Reason | None:
        """What the calendar had to do with a job it let start (for its run's reason)."""
        window = self.calendar.open_window(view.device, view.now)
        if window is None:
            return None
        return Reason(
            self.name, f"inside {window.describe()}", {"rule": "inside-window", "window": window.details()}
        )


def _boundaries(window: Window) -> tuple[datetime, ...]:
    """When the ticker looks at a window: EDGE_GUARD before it opens, when it opens, when it ends."""
    return (window.start - EDGE_GUARD, window.start, window.end)
