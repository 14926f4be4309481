"""Fair share: the order within a priority by each user's recent use of the device.

Usage is device-seconds per user (start to end of every run that started, whatever its outcome),
decayed exponentially with a half-life (default 7 days): a run of 100 s a half-life ago counts
50 s. `FairShare` is an ordering of the queue policy: priorities still come first; within one
priority, the next run goes to the queued user with the least usage, counting what the runs
already picked in the same walk will add (one typical run each), so users with equal standing
alternate (round robin) and one user's 500 jobs interleave with everyone else's. Among a user's
own jobs the order stays FIFO. With the `fifo` setting (PriorityFifo) nothing of this applies.

Usage is kept in memory, fed by every committed change (the engine's bus) and, at start, read
back from the run history (`Usage.load`), so it survives a restart. The ordering keeps its own
index of each user's queued jobs per device (`FairShare.load` once the engine has started, then
`observe`), so a decision costs O(users) rather than O(queue); without it, it scans the queue."""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from qsched_scheduler.domain import Change, JobState, QueuedJob, Reason
from qsched_scheduler.policy import PriorityFifo

DEFAULT_HALF_LIFE = timedelta(days=7)
NAME = "fair-share"


@dataclass(frozen=True)
class UsedTime:
    """One run's time on a device."""

    owner: str
    device: str
    end: datetime
    seconds: float


@dataclass
class Usage:
    """Decayed device-seconds per (device, user). Stored as value at `_at` and decayed on read."""

    clock: Callable[[], datetime]
    half_life: timedelta = DEFAULT_HALF_LIFE
    _used: dict[tuple[str, str], tuple[float, datetime]] = field(default_factory=dict)

    def _decayed(self, value: float, since: datetime, now: datetime) -> float:
        age = (now - since).total_seconds()
        return value * math.pow(0.5, max(0.0, age) / self.half_life.total_seconds())

    def add(self, used: UsedTime) -> None:
        key = (used.device, used.owner)
        now = self.clock()
        value, at = self._used.get(key, (0.0, now))
        self._used[key] = (self._decayed(value, at, now) + self._decayed(used.seconds, used.end, now), now)

    def of(self, device: str, owner: str) -> float:
        value, at = self._used.get((device, owner), (0.0, self.clock()))
        return self._decayed(value, at, self.clock())

    def table(self) -> list[tuple[str, str, float]]:
        """(device, owner, usage) of everyone, by device then least usage first."""
        now = self.clock()
        rows = [(d, o, self._decayed(v, at, now)) for (d, o), (v, at) in self._used.items()]
        return sorted(rows, key=lambda r: (r[0], r[2], r[1]))

    def standings(self, device: str) -> dict[str, float]:
        now = self.clock()
        return {o: self._decayed(v, at, now) for (d, o), (v, at) in self._used.items() if d == device}

    def load(self, history: Iterable[UsedTime]) -> None:
        self._used.clear()
        for used in history:
            self.add(used)

    def observe(self, change: Change) -> None:
        """A committed change: a run that ended adds its time."""
        if not change.event.state.terminal:
            return
        run = change.job.current_run
        if run is None or run.start_time is None or run.end_time is None or run.staged:
            return
        seconds = max(0.0, (run.end_time - run.start_time).total_seconds())
        self.add(UsedTime(change.job.owner, change.job.device, run.end_time, seconds))


class FairShare(PriorityFifo):
    """Priority first; within a priority, least recent usage first (see the module doc)."""

    name = NAME

    def __init__(
        self,
        usage: Usage,
        typical_seconds: Callable[[str], float] = lambda device: 60.0,
        devices: Callable[[str], bool] = lambda device: True,
    ):
        self.usage = usage
        self.typical_seconds = typical_seconds
        self.applies = devices  # the devices set to fair share; the others stay FIFO
        # Per device, per user: their queued jobs as sorted (-priority, queue_order, job_id).
        self._lists: dict[str, dict[str, list[tuple[int, int, str]]]] = {}
        self._where: dict[str, tuple[str, str, tuple[int, int, str]]] = {}
        self._tracking = False

    # -- its own index: each user's queued jobs per device, in (priority, FIFO) order --------------------
    def load(self, jobs: Iterable[QueuedJob]) -> None:
        """Every queued job (from the queue index, once the engine has started); from then on the
        committed changes (`observe`) keep it, and a decision costs O(users), not O(queue)."""
        self._lists.clear()
        self._where.clear()
        for job in jobs:
            self._put(job.device, job.owner, job.job_id, job.priority, job.queue_order)
        self._tracking = True

    def observe(self, change: Change) -> None:
        job = change.job
        self._drop(job.job_id)
        if job.state is JobState.QUEUED:
            self._put(job.device, job.owner, job.job_id, job.priority, job.queue_order)

    def _put(self, device: str, owner: str, job_id: str, priority: int, queue_order: int) -> None:
        entry = (-priority, queue_order, job_id)
        bisect.insort(self._lists.setdefault(device, {}).setdefault(owner, []), entry)
        self._where[job_id] = (device, owner, entry)

    def _drop(self, job_id: str) -> None:
        where = self._where.pop(job_id, None)
        if where is None:
            return
        device, owner, entry = where
        entries = self._lists[device][owner]
        i = bisect.bisect_left(entries, entry)
        if i < len(entries) and entries[i] == entry:
            del entries[i]
        if not entries:
            del self._lists[device][owner]

    # -- the order -------------------------------------------------------------------------------------------
    def arrange(self, view: Any, owners: frozenset[str] | None = None) -> Iterator[QueuedJob]:
        """The view's waiting jobs in fair-share order: by priority; within a priority the user with
        the least usage (plus one typical run per job of theirs already given in this walk) first,
        ties to the user whose next job was queued first; each user's own jobs in FIFO order.
        With `owners`, only their jobs (a gate lets no one else's start now)."""
        if not self.applies(view.device):
            return _only(view.waiting(), owners)
        lookup = getattr(view, "queued", None)
        if self._tracking and lookup is not None:
            return self._from_index(view.device, lookup, owners)
        return self._by_scan(_only(view.waiting(), owners), view.device)

    def _from_index(
        self, device: str, lookup: Callable[[str], QueuedJob | None], owners: frozenset[str] | None = None
    ) -> Iterator[QueuedJob]:
        typical = max(self.typical_seconds(device), 1e-3)
        lists = self._lists.get(device, {})
        if owners is not None:
            lists = {owner: entries for owner, entries in lists.items() if owner in owners}

        def unstaged(entries: list[tuple[int, int, str]], i: int) -> tuple[int, QueuedJob] | None:
            while i < len(entries):
                job = lookup(entries[i][2])
                if job is not None and not job.staged_task_id:
                    return i, job
                i += 1
            return None

        heap: list[tuple[int, float, int, str, int]] = []
        found: dict[str, QueuedJob] = {}
        for owner, entries in lists.items():
            head = unstaged(entries, 0)
            if head is not None:
                i, found[owner] = head
                heap.append((entries[i][0], self.usage.of(device, owner), entries[i][1], owner, i))
        heapq.heapify(heap)
        while heap:
            _, used, _, owner, i = heapq.heappop(heap)
            yield found[owner]
            entries = lists.get(owner, [])
            head = unstaged(entries, i + 1)
            if head is not None:
                j, found[owner] = head
                heapq.heappush(heap, (entries[j][0], used + typical, entries[j][1], owner, j))

    def _by_scan(self, jobs: Iterator[QueuedJob], device: str) -> Iterator[QueuedJob]:
        """The same order from the waiting jobs in priority-FIFO order (before `load`)."""
        typical = max(self.typical_seconds(device), 1e-3)
        given: dict[str, float] = {}  # usage added in this walk, per user
        band: list[QueuedJob] = []
        for job in jobs:
            if band and job.priority != band[0].priority:
                yield from self._interleave(band, device, typical, given)
                band = []
            band.append(job)
        if band:
            yield from self._interleave(band, device, typical, given)

    def _interleave(
        self, band: list[QueuedJob], device: str, typical: float, given: dict[str, float]
    ) -> Iterator[QueuedJob]:
        by_owner: dict[str, deque[QueuedJob]] = {}
        for job in band:
            by_owner.setdefault(job.owner, deque()).append(job)
        heap = [
            (self.usage.of(device, o) + given.get(o, 0.0), jobs[0].queue_order, o)
            for o, jobs in by_owner.items()
        ]
        heapq.heapify(heap)
        while heap:
            used, _, owner = heapq.heappop(heap)
            queue = by_owner[owner]
            yield queue.popleft()
            given[owner] = given.get(owner, 0.0) + typical
            if queue:
                heapq.heappush(heap, (used + typical, queue[0].queue_order, owner))

    def overtakes(self, job: QueuedJob, owner: str, key: tuple[int, ...]) -> bool:
        """Whether a newly queued `job` goes before a staged run of `owner` with `key` (the staged
        run is taken back and the next runs picked again)."""
        if not self.applies(job.device) or owner == job.owner or key[0] != -job.priority:
            return False
        return self.usage.of(job.device, job.owner) <= self.usage.of(job.device, owner)

    def explain(self, job: QueuedJob, ahead: int) -> Reason:
        if not self.applies(job.device):
            fifo = super().explain(job, ahead)
            return Reason(PriorityFifo.name, fifo.summary, fifo.details)
        standings = self.usage.standings(job.device)
        mine = standings.get(job.owner, 0.0)
        less = sum(1 for o, used in standings.items() if used < mine and o != job.owner)
        summary = (
            f"fair share at priority {job.priority}: {job.owner} used {mine:.0f} device-s recently"
            f" ({less} user(s) with less)"
        )
        if ahead:
            summary += f"; {ahead} job(s) ahead in priority order"
        return Reason(
            self.name,
            summary,
            {
                "priority": job.priority,
                "ahead": ahead,
                "usage_seconds": round(mine, 3),
                "users_with_less": less,
            },
        )


def fair_share_devices(setting: str) -> Callable[[str], bool]:
    """The setting QSCHED_FAIR_SHARE_DEVICES: comma-separated device names, or "*" for all."""
    names = {n.strip() for n in setting.split(",") if n.strip()}
    if "*" in names:
        return lambda device: True
    return lambda device: device in names


def _only(jobs: Iterator[QueuedJob], owners: frozenset[str] | None) -> Iterator[QueuedJob]:
    return jobs if owners is None else (job for job in jobs if job.owner in owners)
