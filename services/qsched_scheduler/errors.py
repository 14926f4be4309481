"""Scheduler errors: the canonical classes from qsched_core.errors with the
scheduler's reasons; the servicer turns them into google.rpc.Status with an ErrorInfo."""

from __future__ import annotations

from qsched_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    Unimplemented,
)

__all__ = [
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Unavailable",
    "Unimplemented",
    "job_not_found",
    "task_not_found",
]


def job_not_found(job_id: str) -> NotFound:
    return NotFound("JOB_NOT_FOUND", f"job {job_id} not found", job_id=job_id)


def task_not_found(task_id: str) -> NotFound:
    return NotFound("TASK_NOT_FOUND", f"no job has task {task_id}", task_id=task_id)
