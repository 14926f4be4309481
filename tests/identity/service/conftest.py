"""Helpers for the authentication and authorization tests."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from qsched.wire import error_info


async def refused(
    call, code: grpc.StatusCode, reason: str, domain: str | None = None
) -> grpc.aio.AioRpcError:
    """Await `call`, expecting it to fail with `code` and an ErrorInfo of `reason`."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    error = info.value
    assert error.code() == code, error.details()
    detail = error_info(error)
    assert detail.reason == reason, (detail.reason, error.details())
    if domain is not None:
        assert detail.domain == domain
    return error


def quota_failure(error: grpc.aio.AioRpcError) -> error_details_pb2.QuotaFailure:
    from google.rpc import status_pb2

    raw = [v for k, v in error.trailing_metadata() or () if k == "grpc-status-details-bin"]
    assert raw, "no status details"
    for detail in status_pb2.Status.FromString(raw[0]).details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            return failure
    raise AssertionError("no QuotaFailure in the status details")
