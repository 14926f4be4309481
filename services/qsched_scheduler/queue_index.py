"""Each device's queued jobs in memory, in run order: what the queue policy walks, so picking the
next runs costs no query. Built from the store at start; kept in step with every committed
change (the engine feeds it before watchers hear of the change) and with staging."""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from qsched_scheduler.domain import Change, JobState, QueuedJob, queued_job

Key = Callable[[QueuedJob], tuple[int, ...]]


class DeviceQueue:
    def __init__(self, key: Key):
        self._key = key
        self._keys: list[tuple[tuple[int, ...], str]] = []
        self._jobs: dict[str, QueuedJob] = {}
        self._by_owner: dict[str, list[tuple[tuple[int, ...], str]]] = {}  # each owner's, in order

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: QueuedJob) -> None:
        old = self._jobs.get(job.job_id)
        if old is not None:
            if self._key(old) == self._key(job):
                self._jobs[job.job_id] = job
                return
            self.remove(job.job_id)
        self._jobs[job.job_id] = job
        entry = (self._key(job), job.job_id)
        bisect.insort(self._keys, entry)
        bisect.insort(self._by_owner.setdefault(job.owner, []), entry)

    def remove(self, job_id: str) -> QueuedJob | None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            entry = (self._key(job), job_id)
            _discard(self._keys, entry)
            owned = self._by_owner.get(job.owner, [])
            _discard(owned, entry)
            if not owned:
                self._by_owner.pop(job.owner, None)
        return job

    def get(self, job_id: str) -> QueuedJob | None:
        return self._jobs.get(job_id)

    def __iter__(self) -> Iterator[QueuedJob]:
        for _, job_id in list(self._keys):
            job = self._jobs.get(job_id)
            if job is not None:
                yield job

    def unstaged(self) -> Iterator[QueuedJob]:
        return (job for job in self if not job.staged_task_id)

    def unstaged_of(self, owners: Iterable[str]) -> Iterator[QueuedJob]:
        """The unstaged jobs of `owners` only, in run order (without walking everyone else's)."""
        lists = [list(self._by_owner.get(owner, ())) for owner in owners]
        for _, job_id in heapq.merge(*lists):
            job = self._jobs.get(job_id)
            if job is not None and not job.staged_task_id:
                yield job

    def signature(self) -> tuple[int, int, int]:
        """(jobs, newest queue order, staged jobs): what Queries.queue_signature says of the
        device when this index holds what the store does."""
        jobs = self._jobs.values()
        newest = max((job.queue_order for job in jobs), default=0)
        return len(self._jobs), newest, sum(1 for job in jobs if job.staged_task_id)

    def position(self, job_id: str) -> int:
        """1-based place in run order (0: not queued)."""
        job = self._jobs.get(job_id)
        if job is None:
            return 0
        return bisect.bisect_left(self._keys, (self._key(job), job_id)) + 1


class QueueIndex:
    def __init__(self, key: Key):
        self._key = key
        self._devices: dict[str, DeviceQueue] = {}
        self._tracking: dict[str, list[set[str]]] = {}  # device -> sets noting the jobs changed here

    def load(self, jobs: Iterable[QueuedJob]) -> None:
        self._devices.clear()
        for job in jobs:
            self.device(job.device).put(job)

    def device(self, name: str) -> DeviceQueue:
        queue = self._devices.get(name)
        if queue is None:
            queue = self._devices[name] = DeviceQueue(self._key)
        return queue

    def apply(self, change: Change) -> None:
        job = change.job
        for touched in self._tracking.get(job.device, ()):
            touched.add(job.job_id)
        queue = self.device(job.device)
        if job.state is JobState.QUEUED:
            queue.put(queued_job(job))
        else:
            queue.remove(job.job_id)

    # -- replicas: the changes other replicas commit reach this index by reading the store -------------
    def track(self, device: str) -> set[str]:
        """Note the jobs of the device that changes applied here touch, from now until `untrack`
        (a read of the store that started now may be older than them)."""
        touched: set[str] = set()
        self._tracking.setdefault(device, []).append(touched)
        return touched

    def untrack(self, device: str, touched: set[str]) -> None:
        sets = self._tracking.get(device, [])
        if any(t is touched for t in sets):
            sets[:] = [t for t in sets if t is not touched]

    def replace_device(self, device: str, jobs: Iterable[QueuedJob]) -> None:
        """The device's queue as read from the store (a replica taking the device over)."""
        queue = self._devices[device] = DeviceQueue(self._key)
        for job in jobs:
            queue.put(job)

    def merge(
        self,
        device: str,
        jobs: Iterable[QueuedJob],
        before: set[str],
        touched: set[str],
        take_staged: bool,
    ) -> list[QueuedJob]:
        """Bring the device's queue in line with a read of the store (`jobs`: its queued jobs),
        except for the jobs changes applied here touched since the read began (they are newer
        here). A job queued in the read and not here is added; a job here since before the
        read (`before`) and not in it is removed; `take_staged`: staged marks come from the read
        (a replica that does not dispatch the device). The jobs added, in run order."""
        queue = self.device(device)
        seen: set[str] = set()
        added = []
        for job in jobs:
            seen.add(job.job_id)
            if job.job_id in touched:
                continue
            old = queue.get(job.job_id)
            if old is None:
                queue.put(job)
                added.append(job)
            elif take_staged and old.staged_task_id != job.staged_task_id:
                queue.put(replace(old, staged_task_id=job.staged_task_id))
        for job_id in before - seen - touched:
            queue.remove(job_id)
        return added

    def staged(self, device: str, job_id: str, task_id: str) -> None:
        """A job's run was staged (task_id) or taken back ("")."""
        queue = self.device(device)
        job = queue.get(job_id)
        if job is not None:
            queue.put(replace(job, staged_task_id=task_id))


def _discard(entries: list[tuple[tuple[int, ...], str]], entry: tuple[tuple[int, ...], str]) -> None:
    i = bisect.bisect_left(entries, entry)
    if i < len(entries) and entries[i] == entry:
        del entries[i]
