"""The errors a benchmark config or device can raise (qsched_core's canonical classes with the
gateway's reasons): the gateway sends them as they are, the SDK's replay reports them."""

from __future__ import annotations

from qsched_core.errors import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["FailedPrecondition", "InvalidArgument", "NotFound", "invalid_config", "unknown_device"]


def invalid_config(message: str, **metadata: object) -> InvalidArgument:
    return InvalidArgument("INVALID_CONFIG", message, **metadata)


def unknown_device(device: str, hint: str = "") -> NotFound:
    suffix = f"; {hint}" if hint else ""
    return NotFound("UNKNOWN_DEVICE", f"unknown device {device!r}{suffix}", device=device)
