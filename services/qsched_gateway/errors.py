"""Gateway errors: canonical status code + stable UPPER_SNAKE reason (see the proto's service comment)."""

from __future__ import annotations

from qsched_benchmarks.errors import invalid_config, unknown_device
from qsched_core.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Unavailable

__all__ = [
    "DOMAIN",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "ProviderError",
    "Unavailable",
    "invalid_config",
    "unknown_device",
]

DOMAIN = "qsched.gateway.v1"


class ProviderError(Aborted):
    """The provider refused or lost the work (its message says why)."""


def unknown_provider(name: str, known: list[str]) -> NotFound:
    return NotFound(
        "UNKNOWN_PROVIDER",
        f"unknown provider {name!r}; installed providers: {', '.join(known) or 'none'}",
        provider=name,
    )


def invalid_program(message: str, **metadata: object) -> InvalidArgument:
    return InvalidArgument("INVALID_PROGRAM", message, **metadata)


def unknown_task(task_id: str) -> NotFound:
    return NotFound("UNKNOWN_TASK", f"unknown task {task_id!r}", task_id=task_id)


def not_configured(provider: str, variables: str) -> FailedPrecondition:
    return FailedPrecondition(
        "PROVIDER_NOT_CONFIGURED",
        f"provider {provider!r} has no credentials; set {variables} (see docs/gateway.md)",
        provider=provider,
    )
