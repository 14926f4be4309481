"""Watching the main revisions: a snapshot, then every change of a main pointer in commit order.

The history table (config_main_changes) is the source of truth. Each watcher reads it itself
("the changes after the last one I sent") whenever it may have grown, so a lost wake-up costs
latency, never a change. Two things wake the watchers of a process (`MainWatch`):
- `poke()`, called by ConfigVersioning after it committed a change or registered a type, and
- a poll of the history's mark (newest change id, number of types) every POLL_INTERVAL_S while
  anyone watches, which catches what other processes sharing the database commit.

Polling was chosen over PostgreSQL LISTEN/NOTIFY: it works the same on SQLite, needs no
connection of its own, and one indexed max() per interval costs nothing next to the rest;
the price is up to one interval of latency for a change committed by another replica.
Ids are safe to follow with "id > cursor" because they commit in increasing order (see
qsched_configs.store.sql)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from qsched_configs.domain import (
    ConfigType,
    Heartbeat,
    HistoryMark,
    MainSnapshot,
    TypeList,
    WatchEvent,
)
from qsched_configs.errors import FailedPrecondition, InvalidArgument
from qsched_configs.store.base import ConfigStore

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
DEFAULT_HEARTBEAT_S = 5.0
MIN_HEARTBEAT_S = 0.1
MAX_HEARTBEAT_S = 60.0
BATCH = 500  # changes read per query while catching up

StoreCall = Callable[..., Awaitable[Any]]  # runs a store method off the event loop


def heartbeat_of(requested_s: float) -> float:
    if requested_s == 0:
        return DEFAULT_HEARTBEAT_S
    if not MIN_HEARTBEAT_S <= requested_s <= MAX_HEARTBEAT_S:
        raise InvalidArgument(
            "INVALID_HEARTBEAT_INTERVAL",
            f"heartbeat_interval must be {MIN_HEARTBEAT_S} s to {MAX_HEARTBEAT_S:.0f} s (unset = "
            f"{DEFAULT_HEARTBEAT_S:.0f} s)",
            heartbeat_interval_s=requested_s,
        )
    return requested_s


class MainWatch:
    def __init__(
        self,
        store: ConfigStore,
        call: StoreCall,
        all_types: Callable[[], Awaitable[list[ConfigType]]],
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        self._store = store
        self._call = call
        self._all_types = all_types
        self._poll_interval_s = poll_interval_s
        self._mark = HistoryMark(0, 0)
        self._moved = asyncio.Event()  # set, then replaced, each time the mark moves
        self._poked = asyncio.Event()
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something committed in this process: read the mark now, not at the next poll."""
        self._poked.set()

    async def close(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def watch(self, after_change_id: int, heartbeat_s: float) -> AsyncIterator[WatchEvent]:
        """The events of one watcher (see WatchMainRevisionsResponse in the proto for the order)."""
        if after_change_id < 0:
            raise InvalidArgument(
                "INVALID_CHANGE_ID", "after_change_id must not be negative", after_change_id=after_change_id
            )
        heartbeat_s = heartbeat_of(heartbeat_s)
        self._join()
        try:
            async for event in self._events(after_change_id, heartbeat_s):
                yield event
        finally:
            self._leave()

    async def _events(self, after_change_id: int, heartbeat_s: float) -> AsyncIterator[WatchEvent]:
        loop = asyncio.get_running_loop()
        types_mark = self._mark.type_count  # read before the types: a later registration moves it
        types = tuple(await self._all_types())
        if after_change_id == 0:
            mains = tuple(await self._call(self._store.main_revisions))
            cursor = max((m.change_id for m in mains), default=0)
            yield MainSnapshot(cursor, types, mains)
        else:
            last = (await self._call(self._store.history_mark)).last_change_id
            if after_change_id > last:
                raise FailedPrecondition(
                    "CHANGE_ID_AHEAD",
                    f"change {after_change_id} is beyond the newest change ({last}): this is not the "
                    "history the watcher followed; start again from a snapshot (after_change_id 0)",
                    after_change_id=after_change_id,
                    last_change_id=last,
                )
            cursor = after_change_id
            yield TypeList(types)
        caught_up = False
        last_sent = loop.time()
        while True:
            batch = await self._call(self._store.main_changes_after, cursor, BATCH)
            for item in batch:
                yield item
                cursor = item.change_id
                last_sent = loop.time()
            if len(batch) == BATCH:
                continue
            if self._mark.type_count != types_mark:
                types_mark = self._mark.type_count
                fresh = tuple(await self._all_types())
                if fresh != types:
                    types = fresh
                    yield TypeList(types)
                    last_sent = loop.time()
            if not caught_up or loop.time() - last_sent >= heartbeat_s:
                yield Heartbeat(cursor)
                caught_up = True
                last_sent = loop.time()
            await self._wait_past(cursor, types_mark, last_sent + heartbeat_s - loop.time())

    async def _wait_past(self, change_id: int, type_count: int, timeout_s: float) -> None:
        """Until the mark is past `change_id` or its type count is not `type_count`, or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._mark.last_change_id <= change_id and self._mark.type_count == type_count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._moved.wait()
            except TimeoutError:
                return

    # -- the poller, running while anyone watches ------------------------------------------------------
    def _join(self) -> None:
        self._watchers += 1
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="configs-main-poll")

    def _leave(self) -> None:
        self._watchers -= 1
        if self._watchers == 0 and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _poll(self) -> None:
        while True:
            self._poked.clear()
            try:
                mark = await self._call(self._store.history_mark)
            except Exception:  # the database is down: watchers learn it from their own reads
                log.warning("reading the main history's mark failed", exc_info=True)
            else:
                if mark != self._mark:
                    self._mark = mark
                    moved, self._moved = self._moved, asyncio.Event()
                    moved.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval_s):
                    await self._poked.wait()
