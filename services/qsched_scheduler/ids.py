"""Job ids: JOB-YYYYMMDD-NNNNN, a per-day counter that is never reused."""

from __future__ import annotations

import re
from datetime import datetime

JOB_ID_RE = re.compile(r"^JOB-(\d{8})-(\d{5,})$")


def day_prefix(now: datetime) -> str:
    """The counter key for `now` (UTC, like every timestamp the scheduler stores)."""
    return f"JOB-{now:%Y%m%d}"


def format_job_id(prefix: str, counter: int) -> str:
    return f"{prefix}-{counter:05d}"


def is_job_id(text: str) -> bool:
    match = JOB_ID_RE.match(text)
    if not match:
        return False
    try:
        datetime.strptime(match.group(1), "%Y%m%d")
    except ValueError:
        return False
    return True
