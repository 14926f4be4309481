"""Pages bounded in bytes as well as in count.

A list page of 1,000 jobs whose payloads are 1 MiB each would not fit in a gRPC message
(RESOURCE_EXHAUSTED for everyone who lists). Lists leave the payload's documents out unless
asked (JobView.FULL), and a page ends early where the next item would take it past the budget;
its next_page_token continues from there. Sizes are estimates from the stored JSON: close to
the encoded protobuf, and cheap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from qsched_core.payloads import CircuitProgram, LabExperiment
from qsched_scheduler.domain import Job, Payload, Run

MAX_PAGE_BYTES = 4 * 1024 * 1024
_FIXED_BYTES = 512  # ids, states, times, counters of one job or run

T = TypeVar("T")


def _documents_bytes(payload: Payload | None) -> int:
    """The bulky parts of a payload (those BASIC lists leave out), as stored: QPY as hex."""
    if payload is None:
        return 0
    typed = payload.typed
    if isinstance(typed, LabExperiment):
        return len(typed.expt_config_json)
    if isinstance(typed, CircuitProgram):
        return sum(len(q) for q in typed.qasm) + sum(2 * len(blob) for blob in typed.qpy)
    return len(typed.config_json) + len(typed.suite_json)


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
