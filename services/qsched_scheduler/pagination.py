"""What the scheduler's page tokens are bound to (the tokens: qsched_core.pagination)."""

from __future__ import annotations

from qsched_scheduler.domain import JobFilter


def filter_scope(flt: JobFilter) -> list[object]:
    """The part of a ListJobs request a token is bound to."""
    return [
        "jobs",
        flt.view.value,
        sorted(s.value for s in flt.states),
        flt.owner,
        flt.device,
        flt.kind and flt.kind.value,
    ]


def runs_scope(job_id: str) -> list[object]:
    return ["runs", job_id]
