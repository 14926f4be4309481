"""What a service module hands the host: its gRPC registrations, lifecycle hooks and
the security (authenticator, TLS) its server must be started with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from qsched_core.health import Problems
from qsched_runtime.security import ServerSecurity
from qsched_runtime.server import Registration


async def _nothing() -> None:
    return None


class ServiceHandle:
    def __init__(
        self,
        registrations: Sequence[Registration],
        start: Callable[[], Awaitable[None]] = _nothing,
        stop: Callable[[], Awaitable[None]] = _nothing,
        security: ServerSecurity | None = None,
        problems: Problems | None = None,
    ):
        self.registrations = list(registrations)
        self.problems = problems  # shown as the server's health (NOT_SERVING while any)
        self.start = start
        self._stop = stop
        self.security = security

    async def stop(self) -> None:
        await self._stop()
        if self.security is not None:
            self.security.authenticator.close()
