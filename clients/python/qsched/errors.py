"""Errors from qsched services, decoded from google.rpc.Status details."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class ErrorInfo:
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def error_info(error: grpc.RpcError) -> ErrorInfo:
    """The ErrorInfo a qsched service attached to a failed call (empty if none)."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return ErrorInfo(info.reason, info.domain, dict(info.metadata))
    return ErrorInfo()


class QschedError(Exception):
    """A failed call: the gRPC status code, the service's reason and message."""

    def __init__(
        self, code: grpc.StatusCode, reason: str, message: str, metadata: dict[str, str] | None = None
    ):
        super().__init__(f"{code.name} {reason}: {message}" if reason else f"{code.name}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> QschedError:
        info = error_info(error)
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code, info.reason, details or "", info.metadata)
