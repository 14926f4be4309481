"""What clients and servers both need on the wire, in one small module the services may import
(with `qsched.api`, the only parts of the SDK they may): the ErrorInfo a failed call carries,
bearer-token metadata, TLS channel credentials, channels that present both, and proto
timestamps.

Kept light (grpc and protobuf only, google.rpc on first use): the CLI imports it on every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

# -- errors ---------------------------------------------------------------------------------------------
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class ErrorInfo:
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def error_info(error: grpc.RpcError) -> ErrorInfo:
    """The google.rpc.ErrorInfo a qsched service attached to a failed call (empty if none)."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY:
            continue
        # Imported here, not at the top: only a failed call needs them (CLI start-up time).
        from google.rpc import error_details_pb2, status_pb2

        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return ErrorInfo(info.reason, info.domain, dict(info.metadata))
    return ErrorInfo()


# -- bearer metadata ------------------------------------------------------------------------------------
METADATA_KEY = "authorization"


def bearer_token(metadata: Any) -> str:
    """The token of an `authorization: Bearer <token>` entry ("" when there is none)."""
    for key, value in metadata or ():
        if key == METADATA_KEY and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return ""


def with_bearer(details: Any, token: str, aio: bool) -> Any:
    """`details` (a client interceptor's call details) carrying `token` instead of any other."""
    metadata = [(k, v) for k, v in (details.metadata or ()) if k != METADATA_KEY]
    metadata.append((METADATA_KEY, f"Bearer {token}"))
    if aio:
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials,
            details.wait_for_ready,
        )  # fmt: skip
    return _SyncDetails(
        details.method, details.timeout, metadata, details.credentials,
        getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
    )  # fmt: skip


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):  # type: ignore[no-untyped-def]
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class _SyncBearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(with_bearer(client_call_details, self._token, aio=False), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(with_bearer(client_call_details, self._token, aio=False), request)


class _AioBearerUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def,override]
        return await continuation(with_bearer(client_call_details, self._token, aio=True), request)


class _AioBearerUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def,override]
        return await continuation(with_bearer(client_call_details, self._token, aio=True), request)


class _AioBearerStreamStream(grpc.aio.StreamStreamClientInterceptor):
    """Bidi streams (the executor's RunQueue) carry the token too."""

    def __init__(self, token: str):
        self._token = token

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def,override]
        return await continuation(with_bearer(client_call_details, self._token, aio=True), request_iterator)


def aio_bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """An aio channel files each interceptor under one call type, hence one class per type."""
    if not token:
        return []
    return [_AioBearerUnaryUnary(token), _AioBearerUnaryStream(token), _AioBearerStreamStream(token)]


# -- TLS and channels -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tls:
    """PEM file paths for a TLS channel: the CA to trust, and for mutual TLS the client's
    certificate and key."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""

    def channel_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            return Path(path).expanduser().read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))


def sync_channel(
    address: str, token: str, tls: Tls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    if tls is not None:
        channel = grpc.secure_channel(address, tls.channel_credentials(), options=list(options))
    else:
        channel = grpc.insecure_channel(address, options=list(options))
    return grpc.intercept_channel(channel, _SyncBearer(token)) if token else channel


def aio_channel(
    address: str,
    token: str,
    tls: Tls | None,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    chain = [*interceptors, *aio_bearer_interceptors(token)]
    if tls is not None:
        return grpc.aio.secure_channel(
            address, tls.channel_credentials(), options=list(options), interceptors=chain
        )
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=chain)


# -- timestamps -----------------------------------------------------------------------------------------
def timestamp(value: datetime | float | None) -> timestamp_pb2.Timestamp | None:
    """A proto Timestamp of an aware datetime or of seconds since the epoch (None stays None)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value)
    else:
        ts.FromNanoseconds(int(value * 1e9))
    return ts


def to_datetime(ts: Any) -> datetime | None:
    """An aware UTC datetime of a proto Timestamp (None for an unset one)."""
    if ts is None or (not ts.seconds and not ts.nanos):
        return None
    return ts.ToDatetime(tzinfo=UTC)
