"""Device leases in the database (leases.py uses them): which scheduler replica dispatches a
device. Time is the database's clock (seconds since the Unix epoch), so replicas on hosts whose
clocks disagree still agree on when a lease expired."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

# Seconds since the Unix epoch, by the database's clock.
_NOW = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


@dataclass(frozen=True)
class ExecutorSeen:
    """What a lab device's dispatcher last saw of its executor."""

    state: str  # CONNECTING | CONNECTED | UNREACHABLE ("" unknown)
    since: float  # time.time()
    message: str = ""


@dataclass(frozen=True)
class Lease:
    device: str
    holder: str
    epoch: int
    expires_in_s: float  # negative: expired that long ago
    executor: ExecutorSeen = ExecutorSeen("", 0.0)


class LeaseLost(Exception):
    """The replica no longer holds the device's lease (the epoch it wrote under was superseded)."""


class LeaseStore(Protocol):
    def acquire(self, device: str, holder: str, ttl_s: float) -> int | None: ...
    def renew(
        self,
        held: Mapping[str, int],
        holder: str,
        ttl_s: float,
        seen: Mapping[str, ExecutorSeen] | None = None,
    ) -> set[str]: ...
    def release(self, device: str, holder: str, epoch: int) -> None: ...
    def leases(self) -> list[Lease]: ...


class SqlLeaseStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        now = _NOW[engine.dialect.name]
        # A lease is taken when there is none, when it expired, or when the holder is us again
        # (we let it lapse): each take bumps the epoch, which fences whoever wrote under the old one.
        self._acquire = text(
            "INSERT INTO device_leases (device, holder, epoch, expires_at) "
            f"VALUES (:device, :holder, 1, {now} + :ttl) "
            "ON CONFLICT (device) DO UPDATE SET holder = excluded.holder, "
            "epoch = device_leases.epoch + 1, expires_at = excluded.expires_at "
            f"WHERE device_leases.expires_at < {now} OR device_leases.holder = :holder "
            "RETURNING epoch"
        )
        self._renew = text(
            f"UPDATE device_leases SET expires_at = {now} + :ttl "
            "WHERE device = :device AND holder = :holder AND epoch = :epoch"
        )
        self._renew_seen = text(
            f"UPDATE device_leases SET expires_at = {now} + :ttl, executor_state = :state, "
            "executor_since = :since, executor_message = :message "
            "WHERE device = :device AND holder = :holder AND epoch = :epoch"
        )
        self._release = text(
            "UPDATE device_leases SET expires_at = 0 "
            "WHERE device = :device AND holder = :holder AND epoch = :epoch"
        )
        self._list = text(
            f"SELECT device, holder, epoch, expires_at - {now}, executor_state, executor_since, "
            "executor_message FROM device_leases ORDER BY device"
        )

    def acquire(self, device: str, holder: str, ttl_s: float) -> int | None:
        """The new epoch if this holder took the device's lease, else None."""
        with self._engine.begin() as conn:
            return conn.execute(self._acquire, {"device": device, "holder": holder, "ttl": ttl_s}).scalar()

    def renew(
        self,
        held: Mapping[str, int],
        holder: str,
        ttl_s: float,
        seen: Mapping[str, ExecutorSeen] | None = None,
    ) -> set[str]:
        """Extend the leases held (device -> epoch), in one transaction, with what the holder
        sees of each device's executor (`seen`); the devices still held."""
        kept = set()
        with self._engine.begin() as conn:
            for device, epoch in held.items():
                params = {"device": device, "holder": holder, "epoch": epoch, "ttl": ttl_s}
                executor = (seen or {}).get(device)
                if executor is not None:
                    params.update(state=executor.state, since=executor.since, message=executor.message[:2000])
                statement = self._renew if executor is None else self._renew_seen
                if conn.execute(statement, params).rowcount == 1:
                    kept.add(device)
        return kept

    def release(self, device: str, holder: str, epoch: int) -> None:
        """Give the lease up at once (a clean stop): the next replica need not wait for it to expire."""
        with self._engine.begin() as conn:
            conn.execute(self._release, {"device": device, "holder": holder, "epoch": epoch})

    def leases(self) -> list[Lease]:
        with self._engine.begin() as conn:
            return [
                Lease(device, holder, epoch, left, ExecutorSeen(state, since, message))
                for device, holder, epoch, left, state, since, message in conn.execute(self._list)
            ]


def check_fence(conn: Connection, device: str, holder: str, epoch: int) -> None:
    """In a writing transaction: raise LeaseLost unless `holder` still holds the device's lease at
    `epoch`. On PostgreSQL the row is locked FOR SHARE, so a takeover (which updates it) waits for
    this transaction: the new holder's reconcile then sees everything written under the old epoch."""
    lock = " FOR SHARE" if conn.dialect.name == "postgresql" else ""
    found = conn.execute(
        text(f"SELECT epoch FROM device_leases WHERE device = :device AND holder = :holder{lock}"),
        {"device": device, "holder": holder},
    ).scalar()
    if found != epoch:
        raise LeaseLost(f"the lease of {device} is no longer held by {holder} at epoch {epoch}")
