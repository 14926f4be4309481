"""What a service needs to be reached safely and to reach its peers: the authenticator
and TLS credentials of its server, and the credential it presents when it calls
another qsched service."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from qsched.wire import Tls
from qsched.wire import aio_channel as _aio_channel
from qsched_core.config import ServiceConfig
from qsched_core.sql import make_engine
from qsched_identity import db as identity_db
from qsched_identity.authenticator import Authenticator
from qsched_identity.store import IdentityStore
from qsched_runtime.tracing import client_interceptors


@dataclass(frozen=True)
class ServerSecurity:
    authenticator: Authenticator
    credentials: grpc.ServerCredentials | None  # None: plaintext
    allow_plaintext: bool = False
    reflection_requires_auth: bool = False  # else reflection is open like health


def identity_url(config: ServiceConfig) -> str:
    return identity_db.database_url(config.identity_database_url, config.data_dir)


def server_security(config: ServiceConfig) -> ServerSecurity:
    """Migrates the identity database if needed (safe when several services start at once)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    url = identity_url(config)
    identity_db.upgrade(url)
    authenticator = Authenticator(IdentityStore(make_engine(url)), config.service, config.auth_cache_seconds)
    return ServerSecurity(
        authenticator, server_credentials(config), config.allow_plaintext, config.reflection_requires_auth
    )


def server_credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert_file and not config.tls_key_file:
        if config.tls_client_ca_file:
            raise ValueError("a TLS client CA needs the server's own certificate and key too")
        return None
    if not (config.tls_cert_file and config.tls_key_file):
        raise ValueError("TLS needs both a certificate and a key file")
    pair = (Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes())
    client_ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or a wildcard ("", "0.0.0.0", "[::]") reaches other machines


def check_listen(listen: str, security: ServerSecurity) -> None:
    if security.credentials is None and not security.allow_plaintext and not is_loopback(listen):
        raise OSError(
            f"refusing to listen on {listen} without TLS: set a server certificate and key "
            "(--tls-cert/--tls-key) or pass --allow-plaintext for a private network"
        )


# -- calling peers ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerCredentials:
    """The token and TLS trust a service uses for its calls to other qsched services."""

    token: str = ""
    tls: Tls | None = None

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        return _aio_channel(address, self.token, self.tls, options, client_interceptors())


def peer_credentials(config: ServiceConfig) -> PeerCredentials:
    token = os.environ.get("QSCHED_SERVICE_TOKEN", "").strip()
    if not token:
        try:
            token = config.token_path().read_text().strip()
        except FileNotFoundError:
            token = ""  # the peer will answer UNAUTHENTICATED / MISSING_TOKEN, naming the fix
    tls = None
    if config.tls_ca_file:
        # mTLS: a service presents its own server certificate as its client certificate.
        tls = Tls(config.tls_ca_file, config.tls_cert_file, config.tls_key_file)
    return PeerCredentials(token, tls)
