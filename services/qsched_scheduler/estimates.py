"""Queue-position based start-time estimates."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta

from qsched_scheduler.domain import Job

DEFAULT_RUN_SECONDS = 60.0


def typical_run_seconds(recent: list[float], default: float = DEFAULT_RUN_SECONDS) -> float:
    """Median of recent run durations: robust to the odd hour-long scan."""
    return statistics.median(recent) if recent else default


def estimated_start(now: datetime, position: int, running: Job | None, typical: float) -> datetime:
    """Now, plus what is left of the running job, plus a typical run per job ahead."""
    wait = 0.0
    if running is not None:
        started = running.start_time or now
        wait += max(0.0, typical - (now - started).total_seconds())
    wait += max(0, position - 1) * typical
    return now + timedelta(seconds=wait)
