"""The queue policy: given a device's queue and state, which runs start next, and why.

A policy is an ordering (the run order of the queued jobs) plus gates (what holds a job back
now). `QueuePolicy.next_runs` walks the queue in order and returns the first jobs no gate
holds back, each with the `Reason` that is stored with its run (shown by GetJob and ListRuns);
`why_waiting` explains a queued job that has not been picked. Issues to come add gates here
(reservations, sessions, calibration freshness) and orderings (fair share): a gate is one
class with a name and `holds(job, view)` (and optionally `note(job, view)`: what it has to say
about a job it let through, added to the run's reason), listed where the engine is wired
(server.py). The calendar's gate is calendar.ReservationGate."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from qsched_scheduler.domain import QueuedJob, Reason


class DeviceHold(Protocol):
    """A held device queue (PauseDevice / DrainDevice; holds.DeviceHolds keeps them)."""

    @property
    def mode(self) -> str: ...  # PAUSED | DRAINING

    @property
    def reason(self) -> str: ...

    @property
    def held_by(self) -> str: ...


class QueueView(Protocol):
    """What a policy sees of one device."""

    @property
    def device(self) -> str: ...

    @property
    def now(self) -> datetime: ...

    @property
    def hold(self) -> DeviceHold | None:
        """The device's hold, if its queue is held."""

    @property
    def on_board(self) -> Sequence[str]:
        """Job ids handed to the executor (running first, then waiting, in start order)."""

    def waiting(self) -> Iterator[QueuedJob]:
        """Queued jobs not handed over yet, in the ordering's run order."""

    def ahead_of(self, job_id: str) -> int:
        """Queued jobs that run before this one (handed over or not)."""


@dataclass(frozen=True)
class Decision:
    """A job the policy picked to run next, and why."""

    job: QueuedJob
    reason: Reason


class Ordering(Protocol):
    """The run order. `key` is static (the queue index sorts by it); an ordering whose order
    changes with time may also define `arrange(view)`, which gives the view's waiting jobs in the
    order to pick them now (fair_share.FairShare)."""

    name: str

    def key(self, job: QueuedJob) -> tuple[int, ...]:
        """The job's place in the run order (smaller runs sooner)."""

    def explain(self, job: QueuedJob, ahead: int) -> Reason:
        """Why the job is where it is in the order (`ahead`: queued jobs before it)."""


class Gate(Protocol):
    name: str

    def holds(self, job: QueuedJob, view: QueueView) -> Reason | None:
        """Why `job` may not start now, or None when this gate lets it.

        A gate may also have `holds_rest(job, view) -> bool`: asked after it held `job`, True means
        no job behind it can pass either, so the walk stops (as at a device hold)."""


class PriorityFifo:
    """Higher priority first; within a priority, in the order jobs were queued (a re-run goes to
    the back of its priority)."""

    name = "priority-fifo"

    def key(self, job: QueuedJob) -> tuple[int, ...]:
        return (-job.priority, job.queue_order)

    def explain(self, job: QueuedJob, ahead: int) -> Reason:
        if ahead == 0:
            summary = f"next in line: highest priority queued ({job.priority}), queued first at it"
        else:
            summary = f"{ahead} job(s) ahead at priority {job.priority} or higher"
        return Reason(self.name, summary, {"priority": job.priority, "ahead": ahead})


class DeviceHoldGate:
    """A paused or draining device starts nothing until it is resumed."""

    name = "device-hold"

    def holds(self, job: QueuedJob, view: QueueView) -> Reason | None:
        hold = view.hold
        if hold is None:
            return None
        mode = hold.mode.lower()
        summary = f"device {view.device} is {mode} by {hold.held_by}" + (
            f": {hold.reason}" if hold.reason else ""
        )
        return Reason(self.name, summary, {"mode": hold.mode, "held_by": hold.held_by, "reason": hold.reason})


class QueuePolicy:
    """An ordering and the gates every picked job must pass."""

    def __init__(self, ordering: Ordering, gates: Sequence[Gate] = ()):
        self.ordering = ordering
        self.gates = tuple(gates)

    @property
    def name(self) -> str:
        return "+".join([self.ordering.name, *(g.name for g in self.gates)])

    def key(self, job: QueuedJob) -> tuple[int, ...]:
        return self.ordering.key(job)

    def earliest_start(self, job: QueuedJob, device: str, start: datetime) -> datetime:
        """The estimated start `start` moved past what the gates that know their future (a
        calendar) will hold the job for: for queue-view estimates, not for deciding."""
        for gate in self.gates:
            later = getattr(gate, "earliest_start", None)
            if later is not None:
                start = later(job, device, start)
        return start

    def next_runs(self, view: QueueView, limit: int) -> list[Decision]:
        """Up to `limit` jobs to hand over next, in start order, each with its reason. Gates see
        the jobs picked so far as on the board (a gate estimating when a job starts counts them)."""
        out: list[Decision] = []
        if limit <= 0:
            return out
        picked = _Picked(view)
        arrange = getattr(self.ordering, "arrange", None)  # an ordering that reorders at pick time
        owners = self._only_owners(view)  # e.g. an exclusive window: only its holders' jobs
        if arrange is not None:
            candidates = arrange(picked) if owners is None else arrange(picked, owners)
        elif owners is None:
            candidates = view.waiting()
        elif getattr(view, "waiting_of", None) is not None:
            candidates = picked.waiting_of(owners)
        else:
            candidates = (job for job in view.waiting() if job.owner in owners)
        for job in candidates:
            gate = self._holding_gate(job, picked)
            if gate is None:
                reason = self.ordering.explain(job, 0)
                reason = Reason(
                    reason.policy, reason.summary, {**reason.details, "on_board_ahead": len(picked.on_board)}
                )
                out.append(Decision(job, self._noted(job, picked, reason)))
                picked.add(job.job_id)
                if len(out) >= limit:
                    break
            elif view.hold is not None or _holds_rest(gate, job, picked):
                break  # a device-wide hold, or a gate that holds everything behind this job too
        return out

    def admit(self, job: QueuedJob, view: QueueView, reason: Reason) -> Reason | None:
        """For a job about to start outside `next_runs` (claimed at submit): None when a gate holds
        it, else `reason` with what the gates noted."""
        if self._held(job, view) is not None:
            return None
        return self._noted(job, view, reason)

    def _noted(self, job: QueuedJob, view: QueueView, reason: Reason) -> Reason:
        """The ordering's reason plus what gates that let the job through have to say about it
        (e.g. "inside exclusive window R for alice"): the stored reason names every rule involved."""
        summary, details = reason.summary, dict(reason.details)
        for gate in self.gates:
            note = getattr(gate, "note", None)
            said = note(job, view) if note is not None else None
            if said is not None:
                summary += f"; {said.summary}"
                details[gate.name] = said.details
        if summary == reason.summary:
            return reason
        return Reason(reason.policy, summary, details)

    def why_waiting(self, job: QueuedJob, view: QueueView) -> Reason:
        """Why a queued job has not started: the first gate that holds it, else its place in line."""
        held = self._held(job, view)
        if held is not None:
            return held
        return self.ordering.explain(job, view.ahead_of(job.job_id))

    def held(self, job: QueuedJob, view: QueueView) -> Reason | None:
        """The first gate's reason to hold `job` now (None: every gate lets it start)."""
        return self._held(job, view)

    def _only_owners(self, view: QueueView) -> frozenset[str] | None:
        """The owners whose jobs may start now by every gate that can say so (None: any owner), so
        the walk skips the jobs a gate holds anyway instead of asking about each."""
        owners: frozenset[str] | None = None
        for gate in self.gates:
            only = getattr(gate, "only_owners", None)
            allowed = only(view) if only is not None else None
            if allowed is not None:
                owners = allowed if owners is None else owners & allowed
        return owners

    def _holding_gate(self, job: QueuedJob, view: QueueView) -> Gate | None:
        for gate in self.gates:
            if gate.holds(job, view) is not None:
                return gate
        return None

    def _held(self, job: QueuedJob, view: QueueView) -> Reason | None:
        for gate in self.gates:
            reason = gate.holds(job, view)
            if reason is not None:
                return reason
        return None


class _Picked:
    """A view whose board includes the jobs picked so far in one `next_runs`."""

    def __init__(self, view: QueueView):
        self._view = view
        self.device = view.device
        self.now = view.now
        self.hold = view.hold
        self.on_board: list[str] = list(view.on_board)

    def add(self, job_id: str) -> None:
        self.on_board.append(job_id)

    def waiting(self) -> Iterator[QueuedJob]:
        return self._view.waiting()

    def waiting_of(self, owners: frozenset[str]) -> Iterator[QueuedJob]:
        return self._view.waiting_of(owners)  # type: ignore[attr-defined,no-any-return]

    def ahead_of(self, job_id: str) -> int:
        return self._view.ahead_of(job_id)

    @property
    def queued(self):  # type: ignore[no-untyped-def]
        """The view's `queued(job_id)` lookup, if it has one (orderings use it when present)."""
        return getattr(self._view, "queued", None)


def _holds_rest(gate: Gate, job: QueuedJob, view: QueueView) -> bool:
    holds_rest = getattr(gate, "holds_rest", None)
    return holds_rest is not None and bool(holds_rest(job, view))


def default_policy() -> QueuePolicy:
    return QueuePolicy(PriorityFifo(), [DeviceHoldGate()])
