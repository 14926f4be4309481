"""Sessions: a user has a device to themselves for a while, their jobs back to back.

A user opens a session on a device (a maximum length and an idle timeout). While it is open, only
the jobs that join it (label `session=<id>`, the session owner's) start; everyone else's wait, so
the session's jobs run back to back ahead of the queue. The session ends:
- `close`: no further waiting for new jobs; the session's queued jobs still run, then it ends;
- `cancel`: its queued jobs are cancelled and it ends at once (a running one finishes);
- the idle timeout: nothing of it queued or running for that long;
- the maximum length: from then on its queued jobs wait in the normal queue;
- failure policy `abort`: a session job that fails cancels the session (`continue`: it goes on);
  such a session hands its jobs to the board one at a time (none waits staged behind a running
  one, which the board would start the moment that one failed).
The session gate composes with the calendar: a session job still passes the reservation gate
(a session inside one's own exclusive window works; a maintenance window stops it too).

Sessions are stored (table `sessions`); a restarted scheduler finds the open ones again (their
idle timers start over). Knows nothing of gRPC or SQL."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from qsched_core.errors import FailedPrecondition, InvalidArgument, NotFound
from qsched_scheduler.domain import Change, JobState, QueuedJob, Reason

GATE_NAME = "sessions"
SESSION_LABEL = "session"


class SessionState(enum.Enum):
    OPEN = "OPEN"
    CLOSING = "CLOSING"  # closed by its owner: its queued jobs still run
    ENDED = "ENDED"


class FailurePolicy(enum.Enum):
    CONTINUE = "CONTINUE"
    ABORT = "ABORT"


@dataclass(frozen=True)
class Session:
    session_id: str
    device: str
    owner: str
    open_time: datetime
    max_length: timedelta
    idle_timeout: timedelta
    failure_policy: FailurePolicy = FailurePolicy.CONTINUE
    state: SessionState = SessionState.OPEN
    end_time: datetime | None = None
    end_reason: str = ""

    @property
    def deadline(self) -> datetime:
        return self.open_time + self.max_length

    def details(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "owner": self.owner,
            "state": self.state.value,
            "deadline": self.deadline.isoformat(),
        }


class SessionStore(Protocol):
    def open_sessions(self) -> list[Session]: ...
    def put_session(self, session: Session) -> None: ...


class MemorySessionStore:
    def __init__(self) -> None:
        self.rows: dict[str, Session] = {}

    def open_sessions(self) -> list[Session]:
        return [s for s in self.rows.values() if s.state is not SessionState.ENDED]

    def put_session(self, session: Session) -> None:
        self.rows[session.session_id] = session


@dataclass
class _Live:
    session: Session
    active: set[str] = field(default_factory=set)  # its jobs queued or running
    last_activity: datetime | None = None


class Sessions:
    """The open sessions in memory (one per device at most), written through to the store."""

    def __init__(self, store: SessionStore, clock: Callable[[], datetime]):
        self._store = store
        self._clock = clock
        self._live: dict[str, _Live] = {}  # by device
        self._listeners: list[Callable[[str], None]] = []
        self._cancel_jobs: Callable[[list[str], str], Awaitable[None]] | None = None
        self._pending: list[tuple[str, str]] = []  # (session id, why) to end at the next tick
        self.dropping: set[str] = set()  # sessions whose queued jobs are being cancelled

    # -- wiring ---------------------------------------------------------------------------------------
    def on_change(self, listener: Callable[[str], None]) -> None:
        """`listener(device)` when a session opens or ends on the device."""
        self._listeners.append(listener)

    def on_cancel(self, cancel: Callable[[list[str], str], Awaitable[None]]) -> None:
        """`cancel(job_ids, reason)`: how a cancelled or aborted session drops its queued jobs."""
        self._cancel_jobs = cancel

    def load(self) -> None:
        """Read the open sessions (their idle timers start over)."""
        now = self._clock()
        self._live = {s.device: _Live(s, last_activity=now) for s in self._store.open_sessions()}

    def track(self, active_jobs: list[tuple[str, str]]) -> None:
        """(job id, session id) of the jobs queued or running in a session, after a restart."""
        by_id = {live.session.session_id: live for live in self._live.values()}
        for job_id, session_id in active_jobs:
            if session_id in by_id:
                by_id[session_id].active.add(job_id)

    # -- reads ------------------------------------------------------------------------------------------
    def sessions(self, device: str = "") -> list[Session]:
        return [live.session for d, live in sorted(self._live.items()) if not device or d == device]

    def get(self, session_id: str) -> Session | None:
        live = self._by_id(session_id)
        return live.session if live is not None else None

    def holding(self, device: str, now: datetime) -> Session | None:
        """The session that has the device now, if any (lazily applying its timeouts)."""
        live = self._live.get(device)
        if live is None or self._expired(live, now):
            return None
        return live.session

    def holding_now(self, device: str) -> Session | None:
        """The session that has the device now, by the sessions' clock."""
        return self.holding(device, self._clock())

    def next_boundary(self, now: datetime) -> datetime | None:
        times = []
        for live in self._live.values():
            times.append(live.session.deadline)
            if not live.active and live.last_activity is not None:
                times.append(live.last_activity + live.session.idle_timeout)
        future = [t for t in times if t > now]
        return min(future, default=None)

    # -- commands (blocking store writes: call off the event loop) --------------------------------------
    def open(
        self, device: str, owner: str, max_length: timedelta, idle_timeout: timedelta, policy: FailurePolicy
    ) -> Session:
        now = self._clock()
        if max_length <= timedelta(0) or idle_timeout <= timedelta(0):
            raise InvalidArgument("INVALID_SESSION", "max_length and idle_timeout must be positive")
        live = self._live.get(device)
        if live is not None and not self._expired(live, now):
            raise FailedPrecondition(
                "DEVICE_IN_SESSION",
                f"{device} is in {live.session.owner}'s session {live.session.session_id}",
                session_id=live.session.session_id,
            )
        if live is not None:
            self._end(live, "expired")
        session = Session(
            f"SES-{uuid.uuid4().hex[:12]}", device, owner, now, max_length, idle_timeout, policy
        )
        self._store.put_session(session)
        self._live[device] = _Live(session, last_activity=now)
        self._changed(device)
        return session

    def close(self, session_id: str) -> Session:
        live = self._require(session_id)
        if not live.active:
            return self._end(live, "closed")
        live.session = replace(live.session, state=SessionState.CLOSING)
        self._store.put_session(live.session)
        return live.session

    async def cancel(self, session_id: str, why: str = "cancelled") -> Session:
        live = self._require(session_id)
        dropped = sorted(live.active)
        # Its jobs stay held while they are cancelled, so none is picked again in the meantime.
        self.dropping.add(session_id)
        try:
            ended = self._end(live, why)
            if dropped and self._cancel_jobs is not None:
                await self._cancel_jobs(dropped, f"session {session_id} {why}")
        finally:
            self.dropping.discard(session_id)
        return ended

    def observe(self, change: Change) -> None:
        """A committed change of a job (the engine's bus): track the session's queued and running
        jobs; a failed one aborts a session whose policy says so."""
        session_id = change.job.labels.get(SESSION_LABEL, "")
        if not session_id:
            return
        live = self._by_id(session_id)
        if live is None or change.job.owner != live.session.owner:
            return
        now = self._clock()
        live.last_activity = now
        if change.job.state.terminal:
            live.active.discard(change.job.job_id)
            if change.job.state is JobState.FAILED and live.session.failure_policy is FailurePolicy.ABORT:
                self.dropping.add(session_id)  # at once: the dispatcher picks again right after this
                self._pending.append((session_id, f"aborted: {change.job.job_id} failed"))
                self._changed(live.session.device)  # wakes the ticker, which cancels it
            elif live.session.state is SessionState.CLOSING and not live.active:
                self._pending.append((session_id, "closed"))
                self._changed(live.session.device)
        else:
            live.active.add(change.job.job_id)

    async def tick(self) -> None:
        """End what has to end: sessions whose jobs are done after a close, aborted ones, and those
        past their idle timeout or maximum length."""
        pending, self._pending = self._pending, []
        for session_id, why in pending:
            live = self._by_id(session_id)
            if live is None:
                continue
            if why.startswith("aborted"):
                await self.cancel(session_id, why)
            else:
                self._end(live, why)
        now = self._clock()
        for live in list(self._live.values()):
            if self._expired(live, now):
                self._end(live, "timed out" if now < live.session.deadline else "reached its maximum length")

    # -- inside ------------------------------------------------------------------------------------------
    def _expired(self, live: _Live, now: datetime) -> bool:
        if now >= live.session.deadline:
            return True
        idle_since = live.last_activity or live.session.open_time
        return not live.active and now - idle_since >= live.session.idle_timeout

    def _end(self, live: _Live, why: str) -> Session:
        ended = replace(live.session, state=SessionState.ENDED, end_time=self._clock(), end_reason=why)
        self._store.put_session(ended)
        if self._live.get(ended.device) is live:
            del self._live[ended.device]
            self._changed(ended.device)
        return ended

    def _by_id(self, session_id: str) -> _Live | None:
        for live in self._live.values():
            if live.session.session_id == session_id:
                return live
        return None

    def _require(self, session_id: str) -> _Live:
        live = self._by_id(session_id)
        if live is None:
            raise NotFound("SESSION_NOT_FOUND", f"no open session {session_id}")
        return live

    def _changed(self, device: str) -> None:
        for listener in self._listeners:
            listener(device)


@dataclass
class SessionGate:
    """While a session has the device, only its jobs start."""

    sessions: Sessions
    name: str = GATE_NAME

    def holds(self, job: QueuedJob, view: Any) -> Reason | None:
        if job.session and job.session in self.sessions.dropping:
            return Reason(self.name, f"session {job.session} was cancelled", {"rule": "session-cancelled"})
        session = self.sessions.holding(view.device, view.now)
        if session is None:
            return None
        if job.session == session.session_id and job.owner == session.owner:
            if session.failure_policy is FailurePolicy.ABORT and view.on_board:
                # Not staged behind another run: the board would start it the moment that one failed.
                return Reason(
                    self.name,
                    f"session {session.session_id} aborts on a failure: one job at a time",
                    {"rule": "abort-one-at-a-time", "session": session.details()},
                )
            return None
        return Reason(
            self.name,
            f"{view.device} is in {session.owner}'s session {session.session_id}"
            f" (at most until {session.deadline.isoformat()})",
            {"rule": "in-session", "session": session.details()},
        )

    def note(self, job: QueuedJob, view: Any) -> Reason | None:
        session = self.sessions.holding(view.device, view.now)
        if session is None or job.session != session.session_id:
            return None
        return Reason(self.name, f"in session {session.session_id} of {session.owner}", session.details())
