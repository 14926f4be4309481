"""Pages bounded in bytes as well as in count.

A list page of 1,000 jobs whose payloads are 1 MiB each would not fit in a gRPC message
(RESOURCE_EXHAUSTED for everyone who lists). Lists leave the payload's documents out unless
asked (JobView.FULL), and a page ends early where the next item would take it past the budget;
its next_page_token continues from there. Sizes are estimates from the stored JSON: close to
the encoded protobuf, and cheap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from qsched_scheduler.domain import Job, Payload, Run

MAX_PAGE_BYTES = 4 * 1024 * 1024
# The bulky parts of a payload body: left out of BASIC lists.
DOCUMENT_KEYS = frozenset({"expt_config_json", "qasm", "qpy_hex", "config_json", "suite_json"})
_FIXED_BYTES = 512  # ids, states, times, counters of one job or run

T = TypeVar("T")


def _documents_bytes(payload: Payload | None) -> int:
    if payload is None:
        return 0
    total = 0
    for key in DOCUMENT_KEYS & payload.body.keys():
        value = payload.body[key]
        total += sum(len(v) for v in value) if isinstance(value, list) else len(value)
    return total


def run_bytes(run: Run, full: bool) -> int:
    return _FIXED_BYTES + (_documents_bytes(run.payload) if full else 0)


def job_bytes(job: Job, full: bool) -> int:
    labels = sum(len(k) + len(v) for k, v in job.labels.items())
    documents = _documents_bytes(job.payload) if full else 0
    run = run_bytes(job.current_run, full) if job.current_run else 0
    return _FIXED_BYTES + labels + documents + run


def fitting(items: Sequence[T], size_of: Callable[[T], int], budget: int = MAX_PAGE_BYTES) -> int:
    """How many of `items`, from the first, fit in `budget` (at least one: a single item
    always fits, its own size being bounded at submit)."""
    used = 0
    for count, item in enumerate(items):
        used += size_of(item)
        if used > budget and count > 0:
            return count
    return len(items)
