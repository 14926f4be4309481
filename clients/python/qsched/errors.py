"""Errors from qsched services, decoded from google.rpc.Status details.

Every failed call surfaces as a `QschedError` (never a raw `grpc.RpcError`), of the subclass
that matches its gRPC code, carrying the service's stable `reason` (e.g. JOB_NOT_FOUND):

    QschedError
    ├── InvalidArgument      INVALID_ARGUMENT, OUT_OF_RANGE
    ├── NotFound             NOT_FOUND
    ├── AlreadyExists        ALREADY_EXISTS
    ├── PermissionDenied     PERMISSION_DENIED, UNAUTHENTICATED
    ├── FailedPrecondition   FAILED_PRECONDITION, ABORTED
    ├── ResourceExhausted    RESOURCE_EXHAUSTED
    ├── Unavailable          UNAVAILABLE (the service cannot be reached)
    ├── DeadlineExceeded     DEADLINE_EXCEEDED (also a TimeoutError)
    └── Unimplemented        UNIMPLEMENTED
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from qsched.wire import error_info


class QschedError(Exception):
    """A failed call: the gRPC status code, the service's reason and message.

    `QschedError.from_rpc_error(e)` returns the subclass matching the code, so
    `except qsched.NotFound` and `except QschedError` both work."""

    def __init__(
        self, code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str] | None = None
    ):
        super().__init__(f"{code.name} {reason}: {message}" if reason else f"{code.name}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}
        self.address = ""  # set by the SDK when it knows which service it was talking to

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> QschedError:
        info = error_info(error)
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        kind = _BY_CODE.get(code, QschedError) if cls is QschedError else cls
        return kind(code, info.reason, details or "", info.metadata)


class InvalidArgument(QschedError, ValueError):
    """The request was refused as malformed (bad id, bad priority, bad JSON...)."""


class NotFound(QschedError, LookupError):
    """No such job, device, run or config."""


class AlreadyExists(QschedError):
    """The thing to create exists already."""


class PermissionDenied(QschedError):
    """The caller may not do this (e.g. an experiment module that is not allow-listed)."""


class FailedPrecondition(QschedError):
    """The request is valid but not in the job's current state (e.g. JOB_NOT_TERMINAL)."""


class ResourceExhausted(QschedError):
    """A size or rate limit was hit."""


class Unavailable(QschedError, ConnectionError):
    """The service could not be reached."""


class DeadlineExceeded(QschedError, TimeoutError):
    """The call did not finish in time."""


class Unimplemented(QschedError, NotImplementedError):
    """The service does not implement this call (yet)."""


_BY_CODE: dict[grpc.StatusCode, type[QschedError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def from_rpc_error(error: grpc.RpcError, address: str = "") -> QschedError:
    """The typed QschedError for a failed call; `address` names the service for messages."""
    err = QschedError.from_rpc_error(error)
    err.address = address
    return err


F = TypeVar("F", bound=Callable[..., Any])


def translated(fn: F) -> F:
    """Decorator: any grpc.RpcError raised by `fn` becomes the matching QschedError."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    return wrapper  # type: ignore[return-value]
