"""What a service module hands the host: its gRPC registrations and lifecycle hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from qsched_runtime.server import Registration


async def _nothing() -> None:
    return None


class ServiceHandle:
    def __init__(
        self,
        registrations: Sequence[Registration],
        start: Callable[[], Awaitable[None]] = _nothing,
        stop: Callable[[], Awaitable[None]] = _nothing,
    ):
        self.registrations = list(registrations)
        self.start = start
        self.stop = stop
