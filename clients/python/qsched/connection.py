"""Where the scheduler is and how to reach it."""

from __future__ import annotations

import getpass
import os

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"


def scheduler_address(explicit: str | None = None) -> str:
    return explicit or os.environ.get("QSCHED_ADDRESS") or DEFAULT_ADDRESS


def default_owner() -> str:
    return os.environ.get("QSCHED_USER") or getpass.getuser()


def channel(address: str | None = None) -> grpc.Channel:
    return grpc.insecure_channel(scheduler_address(address))
