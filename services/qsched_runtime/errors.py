"""Domain errors in their google.rpc.Status form, and failed peer calls as port exceptions.

Server side: `abort(context, error, domain)` sends the canonical code, the message, and a
google.rpc.Status with an ErrorInfo (plus a QuotaFailure for a QuotaExceeded and a BadRequest
for an error with field violations); `translates_errors(domain)` does it for every RPC of a
servicer. Client side, `peer_error` turns a failed call to a peer service into the exception the
calling service's port names (every peer client uses it)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from qsched.wire import error_info
from qsched_core.errors import DomainError, PeerRejected, PeerUnavailable, QuotaExceeded
from qsched_core.sql import StorageFull, StorageUnavailable, is_storage_full, is_storage_refusing

log = logging.getLogger(__name__)


def to_status(error: DomainError, domain: str) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=domain, metadata=error.metadata)
    details = [_packed(info)]
    if isinstance(error, QuotaExceeded):
        violation = error_details_pb2.QuotaFailure.Violation(subject=error.subject, description=error.message)
        details.append(_packed(error_details_pb2.QuotaFailure(violations=[violation])))
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_packed(bad))
    return status_pb2.Status(code=code_pb2.Code.Value(error.code), message=error.message, details=details)


def _packed(message: object) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


async def abort(context: grpc.aio.ServicerContext, error: DomainError, domain: str) -> NoReturn:
    await context.abort_with_status(rpc_status.to_status(to_status(error, domain)))
    raise AssertionError("unreachable")  # abort_with_status always raises


ServicerT = TypeVar("ServicerT", bound=type)


def _translating(method: Any, domain: str) -> Any:
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except DomainError as error:
                await abort(context, error, domain)
            except Exception as error:
                named = _storage_error(error)
                if named is None:
                    raise
                await abort(context, named, domain)

        return stream

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except DomainError as error:
            await abort(context, error, domain)
        except Exception as error:
            named = _storage_error(error)
            if named is None:
                raise
            await abort(context, named, domain)

    return unary


def _storage_error(error: Exception) -> DomainError | None:
    """A full disk, or a database refusing writes, is a condition the caller can act on (wait,
    tell the operator), not UNKNOWN. None for any other error."""
    if is_storage_full(error):
        log.error("a write failed, the disk is full: %s", error)
        return StorageFull(str(error))
    if is_storage_refusing(error):
        log.error("a write failed, the database refuses writes: %s", error)
        return StorageUnavailable(str(error))
    return None


def translates_errors(domain: str):
    """Class decorator for a servicer: every RPC method defined on the class sends a
    DomainError raised inside it as a google.rpc.Status with an ErrorInfo of `domain`."""

    def decorate(cls: ServicerT) -> ServicerT:
        for name, member in list(vars(cls).items()):
            rpc = inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
            if rpc and name[:1].isupper():
                setattr(cls, name, _translating(member, domain))
        return cls

    return decorate


# -- client side: calls to peer services ---------------------------------------------------------------------
# Codes that say the peer was not reached or did not answer: nothing was decided there.
UNREACHABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def peer_error(
    error: grpc.RpcError,
    unavailable: Callable[[str], Exception] = PeerUnavailable,
    rejected: Callable[[str, str, str], Exception] = PeerRejected,
    by_code: Mapping[grpc.StatusCode, Callable[[str], Exception]] | None = None,
) -> Exception:
    """What a peer client raises for a failed call (the one client-side translator): the port's
    `unavailable(message)` when the peer was not reached, `by_code[code](message)` for a code
    the port names apart, else `rejected(reason, message, code name)` with the peer's ErrorInfo
    reason (the code's name when the peer sent none)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else str(error)) or ""
    if code in UNREACHABLE:
        return unavailable(f"{code.name}: {message}")
    special = (by_code or {}).get(code)
    if special is not None:
        return special(message)
    return rejected(error_info(error).reason or code.name, message, code.name)
