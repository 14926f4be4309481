"""In-process fan-out of committed changes to WatchJob and WatchQueue streams.

Publishing never blocks: a subscriber that falls more than `maxsize` changes
behind is marked lagged and catches up from the store (every change is
committed before it is published, so nothing is lost)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

from qsched_scheduler.domain import Change


class Subscription:
    def __init__(self, bus: EventBus, key: tuple[str, str], maxsize: int):
        self._bus = bus
        self._key = key
        self.queue: asyncio.Queue[Change] = asyncio.Queue(maxsize)
        self.lagged = False

    def offer(self, change: Change) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.lagged = True

    def drain(self) -> None:
        """Forget queued changes (the reader is about to re-read the store)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.lagged = False

    async def get(self) -> Change:
        return await self.queue.get()

    def close(self) -> None:
        self._bus._remove(self._key, self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, maxsize: int = 1000):
        self._maxsize = maxsize
        self._subs: dict[tuple[str, str], set[Subscription]] = defaultdict(set)
        self._listeners: list[Callable[[Change], None]] = []

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        """Called synchronously with every published change (cheap bookkeeping only)."""
        self._listeners.append(listener)

    def subscribe_job(self, job_id: str) -> Subscription:
        return self._add(("job", job_id))

    def subscribe_device(self, device: str) -> Subscription:
        return self._add(("device", device))

    def publish(self, change: Change) -> None:
        for listener in self._listeners:
            listener(change)
        for key in (("job", change.job.job_id), ("device", change.job.device)):
            for sub in tuple(self._subs.get(key, ())):
                sub.offer(change)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def _add(self, key: tuple[str, str]) -> Subscription:
        sub = Subscription(self, key, self._maxsize)
        self._subs[key].add(sub)
        return sub

    def _remove(self, key: tuple[str, str], sub: Subscription) -> None:
        subs = self._subs.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[key]
