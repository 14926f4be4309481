"""Watching: committed changes fanned out to WatchJob and WatchQueue streams, with replay from
the store for what a watcher missed. Every change reaches the bus only after its commit
(ChangeFeed is the one way in), so a watcher never sees a state the database does not have."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from qsched_core.execution import PartialData
from qsched_scheduler.bus import EventBus, Subscription
from qsched_scheduler.domain import Change, Event, Job, JobFilter, ListView
from qsched_scheduler.errors import InvalidArgument, NotFound
from qsched_scheduler.estimates import Estimates
from qsched_scheduler.live import LiveFeed
from qsched_scheduler.queue_index import QueueIndex
from qsched_scheduler.routing import Routes
from qsched_scheduler.store.base import Queries
from qsched_scheduler.store.thread import StoreThread

REPLAY_BATCH = 1000
QUEUE_SNAPSHOT_LIMIT = 1000


@dataclass(frozen=True)
class QueueSnapshot:
    device: str
    jobs: list[Job]


class ChangeFeed:
    """Where every committed change goes: the queue index and the estimates first (so the next
    dispatch decision sees it), then the watchers."""

    def __init__(self, index: QueueIndex, estimates: Estimates, bus: EventBus):
        self._index = index
        self._estimates = estimates
        self.bus = bus
        self._seqs: OrderedDict[str, int] | None = None

    def track_seqs(self, keep: int = 100_000) -> None:
        """With replicas (replica_events.py), changes come from two paths (this process's commits,
        and other replicas' read back from the database): remember each job's last published seq
        (for the `keep` jobs changed last) and drop a change its job has passed. Off on SQLite."""
        self._seqs = OrderedDict()
        self._keep = keep

    def last_seq(self, job_id: str) -> int:
        """The seq of the job's last published change (0: not tracked)."""
        return self._seqs.get(job_id, 0) if self._seqs is not None else 0

    def publish(self, change: Change) -> None:
        seqs = self._seqs
        if seqs is not None:
            job_id, seq = change.job.job_id, change.event.seq
            if seq <= seqs.get(job_id, 0):
                return  # published already (or a newer change of the job was)
            seqs[job_id] = seq
            seqs.move_to_end(job_id)
            if len(seqs) > self._keep:
                seqs.popitem(last=False)
        self._index.apply(change)
        self._estimates.observe(change)
        self.bus.publish(change)


class Watching:
    def __init__(
        self,
        bus: EventBus,
        queries: Queries,
        thread: StoreThread,
        routes: Routes,
        get: Callable[[str], Awaitable[Job]],
        check_id: Callable[[str], None],
    ):
        self.bus = bus
        self._queries = queries
        self._thread = thread
        self._routes = routes
        self.get = get
        self._check_id = check_id
        self.live: LiveFeed | None = None  # partial data of running runs (live output)

    async def watch(self, job_id: str, after_seq: int = 0) -> AsyncIterator[Job | Event | Change]:
        """Yield the job (snapshot), then every later event in seq order; replay
        events after `after_seq` from the store. Ends when the job is terminal."""
        if after_seq < 0:
            raise InvalidArgument("INVALID_AFTER_SEQ", "after_seq must not be negative")
        self._check_id(job_id)
        with self.bus.subscribe_job(job_id) as sub:  # subscribe first: nothing falls in between
            job = await self.get(job_id)
            yield job
            # A finished job has nothing more to send after its last event (issue 18, defect 6:
            # an after_seq at or beyond it used to wait for events that never come).
            if job.state.terminal and (after_seq == 0 or after_seq >= job.last_seq):
                return
            last = min(after_seq, job.last_seq) if after_seq else job.last_seq
            async for item in self._replay(job_id, last):
                yield item
                if isinstance(item, Change):
                    return
                last = item.seq
            async for item in self._follow_live(sub, job_id, last):
                yield item
                if item.event.state.terminal:
                    return

    async def watch_live(
        self, job_id: str, after_seq: int = 0
    ) -> AsyncIterator[Job | Event | Change | PartialData]:
        """`watch`, with the partial data of the job's running run in between (the latest one
        whenever the stream can take one: older ones are dropped, never queued)."""
        if self.live is None:
            async for item in self.watch(job_id, after_seq):
                yield item
            return
        with self.live.watch(job_id) as slot:  # before the snapshot: no round falls in between
            events = self.watch(job_id, after_seq)
            next_event = asyncio.ensure_future(anext(events))
            next_partial = asyncio.ensure_future(slot.get())
            try:
                while True:
                    done, _ = await asyncio.wait(
                        {next_event, next_partial}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if next_partial in done:  # first: its rounds came before the event beside it
                        yield next_partial.result()
                        next_partial = asyncio.ensure_future(slot.get())
                    if next_event in done:
                        try:
                            item = next_event.result()
                        except StopAsyncIteration:
                            return
                        yield item
                        next_event = asyncio.ensure_future(anext(events))
            finally:
                for task in (next_event, next_partial):
                    task.cancel()
                await asyncio.gather(next_event, next_partial, return_exceptions=True)
                with contextlib.suppress(RuntimeError):
                    await events.aclose()

    async def log_events(self, job_id: str, task_id: str = "") -> list[Event]:
        """The job's log events (of one run with `task_id`), in seq order."""
        self._check_id(job_id)
        await self.get(job_id)  # NOT_FOUND for an unknown job
        out: list[Event] = []
        after = 0
        while True:
            events = await self._thread.call(self._queries.events_after, job_id, after, REPLAY_BATCH)
            out.extend(e for e in events if e.log is not None and (not task_id or e.task_id == task_id))
            if len(events) < REPLAY_BATCH:
                return out
            after = events[-1].seq

    async def _replay(
        self, job_id: str, after: int, before: int | None = None
    ) -> AsyncIterator[Event | Change]:
        """Stored events after `after` (and before `before`); the terminal one comes
        as a Change carrying the final job, and ends the replay."""
        while True:
            events = await self._thread.call(self._queries.events_after, job_id, after, REPLAY_BATCH)
            for event in events:
                if before is not None and event.seq >= before:
                    return
                if event.state.terminal:
                    yield Change(job=await self.get(job_id), event=event)
                    return
                yield event
                after = event.seq
            if len(events) < REPLAY_BATCH:
                return

    async def _follow_live(self, sub: Subscription, job_id: str, last: int) -> AsyncIterator[Change | Event]:
        while True:
            if sub.lagged:  # fell behind: the store has everything we dropped
                sub.drain()
                async for item in self._replay(job_id, last):
                    yield item
                    if isinstance(item, Change):
                        return
                    last = item.seq
                continue
            change = await sub.get()
            if change.event.seq <= last:
                continue
            if change.event.seq > last + 1:  # a gap should not happen; heal it from the store
                async for item in self._replay(job_id, last, before=change.event.seq):
                    yield item
                    if isinstance(item, Change):
                        return
                    last = item.seq
            yield change
            last = change.event.seq

    async def watch_queue(self, device: str) -> AsyncIterator[QueueSnapshot | Change]:
        """A snapshot of the device's queue (running first, then run order), then
        every change to a job of that device."""
        if device not in await self._routes.routes(device):
            raise NotFound("DEVICE_NOT_FOUND", f"unknown device {device!r}", device=device)
        flt = JobFilter(view=ListView.QUEUE, device=device)
        with self.bus.subscribe_device(device) as sub:
            while True:
                jobs = await self._thread.call(self._queries.list_jobs, flt, None, QUEUE_SNAPSHOT_LIMIT)
                yield QueueSnapshot(device, jobs)
                while not sub.lagged:
                    yield await sub.get()
                sub.drain()  # fell behind: start over with a fresh snapshot
