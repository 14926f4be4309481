"""Live output that is not kept: a running run's partial data, from its executor to the WatchJob
streams that asked for it (WatchJobRequest.partial_data).

Nothing here queues: each watcher has a slot holding only the latest partial of its job (a newer
one replaces an unread one), and a partial of a job nobody watches is dropped at once. The
counters say what happened to every partial (`stats`), so that is observable, not inferred from
timing."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from qsched_core.execution import PartialData


@dataclass
class LiveStats:
    published: int = 0  # partials that reached the scheduler
    unwatched: int = 0  # dropped at once: nobody watched their job
    delivered: int = 0  # put into a watcher's slot
    replaced: int = 0  # replaced in a slot before the watcher read them


class LiveWatcher:
    """One watcher's slot: the latest partial of its job, until read."""

    def __init__(self, feed: LiveFeed, job_id: str):
        self._feed = feed
        self.job_id = job_id
        self._latest: PartialData | None = None
        self._ready = asyncio.Event()

    def offer(self, partial: PartialData) -> None:
        if self._latest is not None:
            self._feed.stats.replaced += 1
        self._latest = partial
        self._ready.set()

    async def get(self) -> PartialData:
        while self._latest is None:
            self._ready.clear()
            await self._ready.wait()
        latest, self._latest = self._latest, None
        return latest

    @property
    def held(self) -> int:
        return 0 if self._latest is None else 1

    def close(self) -> None:
        self._feed._remove(self)

    def __enter__(self) -> LiveWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveFeed:
    def __init__(self) -> None:
        self._watchers: dict[str, set[LiveWatcher]] = defaultdict(set)
        self.stats = LiveStats()
        self._listeners: list[Callable[[], None]] = []

    def on_watched_changed(self, listener: Callable[[], None]) -> Callable[[], None]:
        """`listener()` whenever a job gets its first watcher or loses its last (the dispatchers
        tell their executors, which compute partials only for watched jobs); returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def watched_jobs(self) -> frozenset[str]:
        return frozenset(self._watchers)

    def watch(self, job_id: str) -> LiveWatcher:
        watcher = LiveWatcher(self, job_id)
        first = job_id not in self._watchers
        self._watchers[job_id].add(watcher)
        if first:
            self._changed()
        return watcher

    def _changed(self) -> None:
        for listener in tuple(self._listeners):
            listener()

    def watchers(self, job_id: str) -> int:
        return len(self._watchers.get(job_id, ()))

    def held(self) -> int:
        """Partials held in all slots now (at most one per watcher)."""
        return sum(w.held for ws in self._watchers.values() for w in ws)

    def publish(self, partial: PartialData) -> None:
        self.stats.published += 1
        watchers = self._watchers.get(partial.job_id)
        if not watchers:
            self.stats.unwatched += 1
            return
        for watcher in tuple(watchers):
            watcher.offer(partial)
            self.stats.delivered += 1

    def _remove(self, watcher: LiveWatcher) -> None:
        watchers = self._watchers.get(watcher.job_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[watcher.job_id]
                self._changed()
