"""Time, one way everywhere: aware UTC datetimes in the domain (stored as UTC by
`qsched_core.sql.UtcDateTime`); the proto Timestamp conversions are in `qsched.wire`."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (the default clock of every service)."""
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    """Seconds since the epoch (as time.time() gives them) as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)
