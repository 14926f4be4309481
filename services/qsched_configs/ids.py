"""Names and ids: config type names, abbreviations and revision ids.

A revision id is CFG-<ABBR>-YYYYMMDD-NNNNN like the seed's: ABBR is the type's
two-character abbreviation, the date is UTC, and NNNNN is a per-day-per-type
counter (at least five digits) allocated in the database, never reused."""

from __future__ import annotations

import re
from datetime import datetime

TYPE_NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_TYPE_NAME_CHARS = 64
ABBREVIATION_RE = re.compile(r"[A-Z0-9]{2}")
REVISION_ID_RE = re.compile(r"CFG-([A-Z0-9]{2})-([0-9]{8})-([0-9]{5,})")


def is_type_name(name: str) -> bool:
    return len(name) <= MAX_TYPE_NAME_CHARS and bool(TYPE_NAME_RE.fullmatch(name))


def is_abbreviation(text: str) -> bool:
    return bool(ABBREVIATION_RE.fullmatch(text))


def counter_prefix(abbreviation: str, now: datetime) -> str:
    """The counter key for a type on `now`'s day (UTC), e.g. CFG-HW-20260114."""
    return f"CFG-{abbreviation}-{now:%Y%m%d}"


def format_revision_id(prefix: str, counter: int) -> str:
    return f"{prefix}-{counter:05d}"


def parse_revision_id(text: str) -> tuple[str, str, int] | None:
    """(abbreviation, YYYYMMDD, counter) of a well-formed revision id, else None."""
    match = REVISION_ID_RE.fullmatch(text)
    if not match:
        return None
    abbreviation, day, counter = match.groups()
    try:
        datetime.strptime(day, "%Y%m%d")
    except ValueError:
        return None
    if int(counter) == 0:
        return None
    return abbreviation, day, int(counter)


def is_revision_id(text: str) -> bool:
    return parse_revision_id(text) is not None
