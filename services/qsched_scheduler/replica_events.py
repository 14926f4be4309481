"""Events across scheduler replicas on one PostgreSQL database (issue 15, item 2).

Every committed change is published in-process by the replica that made it (ChangeFeed, the
fast path). For the others, the database carries it: a trigger on the event table sends
`NOTIFY qsched_events` in the inserting transaction (migration 0017), so the notification is
delivered exactly when the change commits, and names the writer (its `application_name`, which
`tag_connections` sets to the replica's origin) and the event row ids. Each replica keeps one
listening connection (`PgEventListener`) and hands what it hears to an `EventRelay`, which reads
the rows named by other replicas from the event table (the source of truth) with their jobs, and
publishes them to this replica's change feed: queue index, estimates, then WatchJob / WatchQueue.

Nothing is lost when a notification is: the relay keeps a high-water mark of the event ids it has
heard of (its own replica's included) and the ids below it it has not (`gaps`: a transaction
still open, or rolled back). When the listening connection drops, the relay reads everything
above the mark and in the gaps once it is back (`catch_up`), before it trusts notifications again.
Its own replica's changes are not read back on the fast path; a catch-up may read some, and the
change feed drops a change whose seq its job has already passed (`ChangeFeed.track_seqs`), so
each watcher sees every seq once, in order (a watcher that sees a later seq heals the gap from
the store, watch.py). On SQLite none of this runs."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from qsched_scheduler.domain import Change, Event, Job, JobState

log = logging.getLogger(__name__)

CHANNEL = "qsched_events"
READ_BATCH = 1000  # rows per read (a catch-up pages through more)
GAP_TTL_S = 120.0  # an id not heard of for this long is taken for a rolled-back insert
MAX_GAPS = 10_000
HEARTBEAT_S = 5.0  # a silent listening connection is checked this often
RECONNECT_MAX_S = 2.0

Logged = tuple[int, Event, JobState | None]


class EventLog(Protocol):
    """The reads the relay needs (SqlJobStore). Synchronous: the relay calls them on a thread."""

    def max_event_id(self) -> int: ...

    def logged_events(self, ids: Sequence[int], after_id: int | None, limit: int) -> list[Logged]: ...

    def jobs_by_id(self, job_ids: Sequence[str]) -> dict[str, Job]: ...


def replica_origin() -> str:
    """A name for this replica, unique among the processes on the database."""
    return f"qsched-scheduler {socket.gethostname()[:20]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def tag_connections(engine: Engine, origin: str) -> None:
    """Every connection of `engine` reports `origin` as its application_name (PostgreSQL): the
    trigger puts it in the notification, so the relay knows its own replica's changes. Also shown
    in pg_stat_activity."""

    @event.listens_for(engine, "do_connect")
    def _tag(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["application_name"] = origin


def parse(payload: str) -> tuple[str, list[int] | None]:
    """`origin|ids` -> (origin, ids); None for "catch up" (`*`, or a payload not understood)."""
    origin, sep, text = payload.rpartition("|")
    if not sep or text == "*":
        return origin, None
    ids: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            ids.extend(range(int(lo), int(hi) + 1) if dash else (int(lo),))
    except ValueError:
        return origin, None
    return origin, ids


class EventRelay:
    """What the listener heard -> reads of the event table -> `publish(change)` in id order.

    One read at a time (a task of its own); notifications that arrive meanwhile are merged into
    the next read, so a burst costs a few reads, not one per commit."""

    def __init__(
        self,
        log_: EventLog,
        origin: str,
        publish: Callable[[Change], None],
        last_seq: Callable[[str], int] = lambda job_id: 0,
        call: Callable[..., Any] = asyncio.to_thread,
        clock: Callable[[], float] = time.monotonic,
        react: Callable[[Change], None] | None = None,
    ):
        self._log = log_
        self.origin = origin
        self._publish = publish
        # Once per job and read, after its changes were published: the job as it is now, the
        # last event read and the state before the first (what a dispatching replica acts on).
        self._react = react
        self._last_seq = last_seq  # what the change feed published last for a job (0: unknown)
        self._call = call
        self._clock = clock
        self.mark: int | None = None  # every id <= mark was heard of, or is in `gaps`
        self.gaps: dict[int, float] = {}  # id -> when it was noticed missing
        self._pending: set[int] = set()  # ids other replicas wrote, not read yet
        self._catch_up = False
        self._expired_at = -math.inf
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.published = 0  # changes published (for tests and logs)
        self.reads = 0

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="replica-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def settled(self) -> None:
        """Until nothing heard is left unread (tests)."""
        while self._pending or self._catch_up or not self._idle.is_set() or self._wake.is_set():
            await asyncio.sleep(0.001)

    # -- what the listener tells it -------------------------------------------------------------------
    async def connected(self) -> None:
        """The listening connection is (again) up and LISTENing: the first time, start from the
        table's end (what is older, the index and the watchers read from the store themselves);
        after a loss, catch up on everything above the mark and in the gaps."""
        if self.mark is None:
            self.mark = await self._call(self._log.max_event_id)
            return
        self._catch_up = True
        self._wake.set()

    def notified(self, payload: str) -> None:
        origin, ids = parse(payload)
        if ids is None:
            self._catch_up = True
            self._wake.set()
            return
        if self.mark is None:  # before the start point: older than what was loaded
            return
        own = origin == self.origin
        now = self._clock()
        for i in sorted(ids):
            if i > self.mark:
                if self._catch_up or i - self.mark > MAX_GAPS:
                    # A catch-up reads everything above the mark anyway (this one included):
                    # the mark stays until it has, so nothing between is taken for heard of.
                    self._catch_up = True
                    self._wake.set()
                else:
                    self._note_gaps(i, now)  # ids between: open (or rolled-back) inserts
                    self.mark = i
            elif self.gaps.pop(i, None) is None:
                continue  # heard of already (a catch-up read it)
            if not own:
                self._pending.add(i)
        if now - self._expired_at > 1.0:
            self._expire(now)
        if self._pending:
            self._wake.set()

    # -- reading ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._idle.clear()
            try:
                if self._catch_up:
                    await self._read_catch_up()
                if self._pending:
                    await self._read_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading events of other replicas failed; retrying")
                await asyncio.sleep(0.5)
                self._wake.set()
            finally:
                self._idle.set()

    async def _read_pending(self) -> None:
        ids, self._pending = sorted(self._pending), set()
        done = 0
        try:
            for done in range(0, len(ids), READ_BATCH):
                chunk = ids[done : done + READ_BATCH]
                await self._deliver(*await self._call(self._read, chunk, None), foreign=True)
        except Exception:
            self._pending.update(ids[done:])  # read them next time
            raise

    async def _read_catch_up(self) -> None:
        """Everything above the mark and in the gaps, page by page (a failure retries it all);
        `_catch_up` stays set until it is done (notifications meanwhile leave the mark alone)."""
        assert self.mark is not None
        while True:
            self._expire(self._clock())
            gaps = sorted(self.gaps)
            rows, jobs = await self._call(self._read, gaps, self.mark)
            now = self._clock()
            for row_id, _, _ in rows:
                if self.gaps.pop(row_id, None) is None and row_id > self.mark:
                    self._note_gaps(row_id, now)
                    self.mark = row_id
                self._pending.discard(row_id)
            await self._deliver(rows, jobs)
            if len(rows) < READ_BATCH:
                break
        self._catch_up = False
        log.info("events of other replicas caught up to id %s (%d gaps)", self.mark, len(self.gaps))

    def _read(self, ids: Sequence[int], after_id: int | None) -> tuple[list[Logged], dict[str, Job]]:
        """On the worker thread: the rows, then their jobs (one hop off the event loop)."""
        rows = self._log.logged_events(ids, after_id, READ_BATCH)
        jobs = self._log.jobs_by_id(sorted({e.job_id for _, e, _ in rows})) if rows else {}
        return rows, jobs

    async def _deliver(self, rows: Sequence[Logged], jobs: dict[str, Job], foreign: bool = False) -> None:
        """Publish the rows not published yet; `foreign`: every row is another replica's (read by
        the ids it named), so the job's current state is reacted to even when this replica's own
        later change of the job was published first."""
        self.reads += 1
        reacting: dict[str, Change] = {}
        for _, ev, previous in rows:
            job = jobs.get(ev.job_id)
            if job is None:  # deleted meanwhile
                continue
            fresh = ev.seq > self._last_seq(ev.job_id)  # else published already (a later one, or own)
            if fresh:
                as_of = job
                if ev.seq < job.last_seq:  # the job has moved on since: as of this event, its state
                    as_of = replace(job, state=ev.state, last_seq=ev.seq)  # (the rest as it is now)
                self._publish(Change(job=as_of, event=ev, previous_state=previous))
                self.published += 1
            if fresh or foreign:
                first = reacting.get(ev.job_id)
                reacting[ev.job_id] = Change(job, ev, first.previous_state if first else previous)
        if self._react is not None:
            for change in reacting.values():
                self._react(change)

    def _note_gaps(self, below: int, now: float) -> None:
        """The ids between the mark and `below` were not heard of (at most the MAX_GAPS highest:
        an insert still open is among the last ids taken)."""
        assert self.mark is not None
        for missing in range(max(self.mark + 1, below - MAX_GAPS), below):
            self.gaps[missing] = now

    def _expire(self, now: float) -> None:
        self._expired_at = now
        if not self.gaps:
            return
        old = [i for i, t in self.gaps.items() if now - t > GAP_TTL_S]
        for i in old:
            del self.gaps[i]
        if len(self.gaps) > MAX_GAPS:
            for i in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[i]


class PgEventListener:
    """The one LISTEN connection of a replica (psycopg, asyncio): notifications go to the relay;
    a lost connection is reopened (backing off to RECONNECT_MAX_S) and the relay catches up."""

    def __init__(self, url: str, relay: EventRelay):
        parsed = make_url(url).set(drivername="postgresql")
        self._dsn = parsed.render_as_string(hide_password=False)
        self._relay = relay
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it connected (tests: a reconnect happened)
        self.backend_pid = 0  # the listening backend (tests terminate it)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and LISTEN before returning (so nothing committed after is missed)."""
        self._relay.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="replica-events-listen")
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            log.warning("not listening to other replicas' events yet (still trying)")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._relay.stop()

    async def _run(self) -> None:
        import psycopg

        delay = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn,
                    autocommit=True,
                    application_name=f"{self._relay.origin} listener",
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.backend_pid = conn.info.backend_pid
                    await self._relay.connected()
                    self.connections += 1
                    self.connected.set()
                    delay = 0.05
                    while True:
                        async for note in conn.notifies(timeout=HEARTBEAT_S):
                            self._relay.notified(note.payload)
                        await conn.execute("SELECT 1")  # quiet: is the connection still there?
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("listening to other replicas' events: %s; reconnecting in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)


def ids_text(ids: Iterable[int]) -> str:
    """The payload form of `ids` (what the trigger sends): tests build notifications with it."""
    return ",".join(str(i) for i in sorted(ids))
