"""How the SDK and the CLI prove who they are: a bearer token, and TLS when the
scheduler is not on loopback.

Token, first found wins: the `token=` argument, $QSCHED_TOKEN, the file named by
$QSCHED_TOKEN_FILE, then `<config dir>/token`, where the config dir is $QSCHED_CONFIG_DIR,
else $XDG_CONFIG_HOME/qsched, else ~/.config/qsched. `qsched up` writes that file (mode
0600, in a 0700 directory) for the OS user who starts the stack; other users get a token
from an admin (`qsched admin user token NAME`) and save it with `qsched login`.

TLS, from the environment: $QSCHED_TLS_CA (PEM of the CA that signed the servers'
certificates; setting it switches the channel to TLS), and for mutual TLS
$QSCHED_TLS_CERT / $QSCHED_TLS_KEY (the client's certificate and key)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

TOKEN_FILE_NAME = "token"
METADATA_KEY = "authorization"


def config_dir() -> Path:
    explicit = os.environ.get("QSCHED_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "qsched"


def token_file() -> Path:
    explicit = os.environ.get("QSCHED_TOKEN_FILE")
    return Path(explicit).expanduser() if explicit else config_dir() / TOKEN_FILE_NAME


def find_token(explicit: str | None = None) -> str:
    """The caller's bearer token, or "" when none is configured (the server then says how to get one)."""
    if explicit:
        return explicit.strip()
    env = os.environ.get("QSCHED_TOKEN", "").strip()
    if env:
        return env
    path = token_file()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""
    except PermissionError as exc:
        raise PermissionError(f"cannot read the qsched token file {path}: {exc.strerror}") from None


def save_token(token: str, path: Path | None = None) -> Path:
    """Write `token` readable by this OS user only (directory 0700, file 0600), atomically."""
    path = path or token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # a shared parent (e.g. $QSCHED_TOKEN_FILE in /tmp) is not ours
        if path.parent.name == "qsched":
            path.parent.chmod(0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".token-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token.strip() + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


@dataclass(frozen=True)
class Tls:
    """PEM file paths for a TLS channel."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""

    @classmethod
    def from_env(cls) -> Tls | None:
        ca = os.environ.get("QSCHED_TLS_CA", "")
        if not ca:
            return None
        return cls(ca, os.environ.get("QSCHED_TLS_CERT", ""), os.environ.get("QSCHED_TLS_KEY", ""))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str) -> bytes | None:
            return Path(path).expanduser().read_bytes() if path else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))


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


def aio_bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """An aio channel files each interceptor under one call type, hence one class per type."""
    return [_AioBearerUnaryUnary(token), _AioBearerUnaryStream(token)] if token else []


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
