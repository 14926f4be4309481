"""Domain errors: what a caller can act on, without gRPC.

Domain code raises these; the gRPC floor (`qsched_runtime.errors`) sends them as the canonical
status code with a google.rpc.Status carrying an ErrorInfo (and a QuotaFailure or BadRequest
where the error says more). Each service adds its own stable UPPER_SNAKE reasons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class FieldViolation(Protocol):
    """One thing wrong with a request field (sent as a google.rpc.BadRequest field violation)."""

    field: str
    description: str


class DomainError(Exception):
    """An error a caller can act on. `reason` is stable UPPER_SNAKE; metadata
    repeats the dynamic parts of the message (AIP-193)."""

    code: str = "INTERNAL"
    violations: Sequence[FieldViolation] = ()

    def __init__(self, reason: str, message: str, **metadata: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = {key: str(value) for key, value in metadata.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


# The canonical codes qsched services answer with.
class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"


class Aborted(DomainError):
    code = "ABORTED"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class ResourceExhausted(DomainError):
    code = "RESOURCE_EXHAUSTED"


class QuotaExceeded(ResourceExhausted):
    """A per-user limit: sent with a google.rpc.QuotaFailure naming the subject and limit."""

    def __init__(self, reason: str, message: str, subject: str, **metadata: object) -> None:
        super().__init__(reason, message, subject=subject, **metadata)
        self.subject = subject


class Unavailable(DomainError):
    code = "UNAVAILABLE"


class Unimplemented(DomainError):
    code = "UNIMPLEMENTED"


# -- failures of calls to peer services, as the calling service's ports name them ---------------------------
class PeerUnavailable(Exception):
    """A peer service could not be reached (or did not answer in time): nothing was decided there."""


class PeerRejected(Exception):
    """A peer service refused a request: its ErrorInfo `reason` (the status code's name when it sent
    none), its message, and the canonical status `code` name (e.g. PERMISSION_DENIED)."""

    def __init__(self, reason: str, message: str, code: str = "FAILED_PRECONDITION"):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.code = code
