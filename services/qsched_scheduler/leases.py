"""Device leases: any number of scheduler replicas share one database, and exactly one of them
dispatches a given device at a time (docs/deployment.md, "A department with scheduler replicas").

A lease is a row of `device_leases` (store/leases.py): holder, epoch, expiry by the database's
clock. The holder renews its leases every `renew_s`; every replica tries, every `poll_s`, to take
the leases of its devices that expired. A replica that dies stops renewing: `ttl_s` later its
devices are free, and the next poll of another replica takes them (bounded: about ttl_s + poll_s
after the last renewal). A clean stop gives its leases up at once.

Why a lease table rather than PostgreSQL advisory locks on a dedicated connection: an advisory
lock is held as long as its session lives, so a paused or partitioned holder whose TCP connection
stays up keeps it indefinitely, and a lock has no epoch to fence a stale holder with; a lease
expires by time whatever the holder's state, its epoch goes into the stage and claim
transactions (a holder that lost the lease writes nothing there: `store.leases.check_fence`),
and it works on SQLite too (one replica: it simply always holds its leases).

The holder also stops on its own: when it could not renew for `ttl_s` (measured from the start of
its last successful renewal, so never later than the database's expiry) it gives the device up
locally before anyone else can take it over."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from qsched_scheduler.store.leases import ExecutorSeen, Lease, LeaseStore

log = logging.getLogger(__name__)

TTL_S = float(os.environ.get("QSCHED_LEASE_TTL_S", "1.5"))
RENEW_S = TTL_S / 5
POLL_S = 0.2
MARGIN_S = 0.1  # a holder stops this much before the database could let anyone else in


def replica_id() -> str:
    """This process as a lease holder: host, pid and a random part (a restarted process is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class DeviceLease:
    device: str
    on_acquired: Callable[[], None]
    on_lost: Callable[[], None]
    seen: Callable[[], ExecutorSeen] | None = None  # written with each renewal
    epoch: int = 0  # 0: not held here
    valid_until: float = -math.inf  # time.monotonic()
    renewed_at: float = -math.inf


class Leases:
    def __init__(
        self,
        store: LeaseStore,
        holder: str = "",
        ttl_s: float = TTL_S,
        renew_s: float = RENEW_S,
        poll_s: float = POLL_S,
    ):
        self._store = store
        self.holder = holder or replica_id()
        self.ttl_s = ttl_s
        self.renew_s = renew_s
        self.poll_s = poll_s
        self._leases: dict[str, DeviceLease] = {}
        self._task: asyncio.Task[None] | None = None
        # Its own thread: a renewal never waits behind the store thread's long transactions.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qsched-leases")

    def add(
        self,
        device: str,
        on_acquired: Callable[[], None],
        on_lost: Callable[[], None],
        seen: Callable[[], ExecutorSeen] | None = None,
    ) -> None:
        """Contend for the device's lease: `on_acquired` when taken, `on_lost` when it is lost;
        `seen` (lab devices): what the dispatcher sees of the executor, stored with each renewal
        so every replica can show it."""
        if device not in self._leases:
            self._leases[device] = DeviceLease(device, on_acquired, on_lost, seen)

    async def all(self) -> list[Lease]:
        """Every device's lease as the database has it (for ListDevices)."""
        return await self._call(self._store.leases)

    def holds(self, device: str) -> bool:
        lease = self._leases.get(device)
        return lease is not None and lease.epoch > 0 and time.monotonic() < lease.valid_until

    def fence(self, device: str) -> tuple[str, int] | None:
        """(holder, epoch) for a write that must be made under the lease; None when not held.
        Called from the store thread too."""
        lease = self._leases.get(device)
        if lease is None or lease.epoch == 0 or time.monotonic() >= lease.valid_until:
            return None
        return self.holder, lease.epoch

    def held(self) -> dict[str, int]:
        return {d: lease.epoch for d, lease in self._leases.items() if lease.epoch}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="device-leases")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for lease in self._leases.values():
            if lease.epoch:
                epoch, lease.epoch = lease.epoch, 0
                lease.on_lost()
                try:
                    await self._call(self._store.release, lease.device, self.holder, epoch)
                except Exception as exc:  # it expires by itself
                    log.warning("could not release the lease of %s: %s", lease.device, exc)
        self._pool.shutdown(wait=False)

    async def _call(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the database: the holder stops when its leases run out
                log.warning("device leases: %s", f"{exc}"[:300])
                self._expire(time.monotonic())
            await asyncio.sleep(self.poll_s)

    def _lose(self, lease: DeviceLease, why: str) -> None:
        log.warning("lost the lease of %s (epoch %d): %s", lease.device, lease.epoch, why)
        lease.epoch = 0
        lease.valid_until = -math.inf
        lease.on_lost()

    def _expire(self, now: float) -> None:
        for lease in self._leases.values():
            if lease.epoch and now >= lease.valid_until:
                self._lose(lease, "not renewed in time")

    async def tick(self) -> None:
        """Renew what is held and due; take what expired."""
        now = time.monotonic()
        self._expire(now)
        due = {
            d: lease
            for d, lease in self._leases.items()
            if lease.epoch and now - lease.renewed_at >= self.renew_s
        }
        if due:
            started = time.monotonic()
            seen = {d: lease.seen() for d, lease in due.items() if lease.seen is not None}
            kept = await self._call(
                self._store.renew, {d: lease.epoch for d, lease in due.items()}, self.holder, self.ttl_s, seen
            )
            for device, lease in due.items():
                if not lease.epoch:
                    continue  # lost meanwhile (expired locally)
                if device in kept:
                    lease.renewed_at = started
                    lease.valid_until = started + self.ttl_s - MARGIN_S
                else:
                    self._lose(lease, "another replica holds it")
        for lease in list(self._leases.values()):
            if lease.epoch:
                continue
            started = time.monotonic()
            epoch = await self._call(self._store.acquire, lease.device, self.holder, self.ttl_s)
            if epoch:
                lease.epoch = int(epoch)
                lease.renewed_at = started
                lease.valid_until = started + self.ttl_s - MARGIN_S
                log.info("took the lease of %s (epoch %d) as %s", lease.device, lease.epoch, self.holder)
                lease.on_acquired()
