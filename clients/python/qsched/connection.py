"""Where the scheduler is and how to reach it.

Addresses are gRPC targets, `host:port` (e.g. "127.0.0.1:50051"). For compatibility with the seed's
`JobClient("http://host:8000")`, a leading `http://` / `grpc://` and a trailing `/` are stripped; the port
must still be the scheduler's gRPC port."""

from __future__ import annotations

import os

import grpc

from qsched.credentials import find_token, tls_from_env
from qsched.wire import aio_channel as _aio_channel
from qsched.wire import sync_channel

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_DEVICE = "qick"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Reconnect quickly after a dropped connection (the defaults back off up to 2 minutes), and
# ping at most every 5 minutes (the servers' minimum) so a dead link under a long wait is noticed.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 300_000),
]


def normalize_address(address: str) -> str:
    for prefix in ("http://", "https://", "grpc://"):
        if address.startswith(prefix):
            address = address[len(prefix) :]
    return address.rstrip("/")


def scheduler_address(explicit: str | None = None) -> str:
    return normalize_address(explicit or os.environ.get("QSCHED_ADDRESS") or DEFAULT_ADDRESS)


def default_owner() -> str:
    """The owner a submission names: "" (the server takes the authenticated user) unless
    $QSCHED_USER says otherwise, which the server accepts only when it matches the token."""
    return os.environ.get("QSCHED_USER", "")


def default_device() -> str:
    return os.environ.get("QSCHED_DEVICE") or DEFAULT_DEVICE


def channel(address: str | None = None, token: str | None = None) -> grpc.Channel:
    """A channel to the scheduler carrying the caller's token (qsched.credentials)."""
    return sync_channel(scheduler_address(address), find_token(token), tls_from_env(), CHANNEL_OPTIONS)


def aio_channel(address: str | None = None, token: str | None = None) -> grpc.aio.Channel:
    return _aio_channel(scheduler_address(address), find_token(token), tls_from_env(), CHANNEL_OPTIONS)
