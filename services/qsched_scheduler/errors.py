"""Scheduler errors. Each names a canonical status and a stable UPPER_SNAKE reason;
the servicer turns them into google.rpc.Status with an ErrorInfo."""

from __future__ import annotations

from qsched_runtime.errors import DomainError


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class Unavailable(DomainError):
    code = "UNAVAILABLE"


class Unimplemented(DomainError):
    code = "UNIMPLEMENTED"


def job_not_found(job_id: str) -> NotFound:
    return NotFound("JOB_NOT_FOUND", f"job {job_id} not found", job_id=job_id)
