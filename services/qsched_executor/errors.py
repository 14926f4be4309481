"""The executor's domain errors (google.rpc codes via qsched_runtime.errors.abort)."""

from __future__ import annotations

from qsched_core.errors import DomainError

DOMAIN = "qsched.executor.v1"


class DeviceBusy(DomainError):
    code = "FAILED_PRECONDITION"


class RunNotFound(DomainError):
    code = "NOT_FOUND"


class ModuleNotAllowed(DomainError):
    code = "PERMISSION_DENIED"


class InvalidRequest(DomainError):
    code = "INVALID_ARGUMENT"


class ConfigUnavailable(DomainError):
    code = "FAILED_PRECONDITION"
