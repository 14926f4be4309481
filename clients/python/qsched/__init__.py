"""qsched: the Python SDK and CLI for the qsched job scheduler.

    from qsched import JobClient          # the seed's synchronous client
    from qsched.aio import Client, Job    # asyncio job handles

Importing `qsched` is cheap: the SDK's classes load on first use. The generated gRPC API lives
under `qsched.api` (e.g. `qsched.api.jobs.v1.jobs_pb2`)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "JobClient": "qsched.client",
    "JobResult": "qsched.client",
    "RunData": "qsched.data",
    "QschedError": "qsched.errors",
    "InvalidArgument": "qsched.errors",
    "NotFound": "qsched.errors",
    "AlreadyExists": "qsched.errors",
    "PermissionDenied": "qsched.errors",
    "FailedPrecondition": "qsched.errors",
    "ResourceExhausted": "qsched.errors",
    "Unavailable": "qsched.errors",
    "DeadlineExceeded": "qsched.errors",
    "Unimplemented": "qsched.errors",
}

__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "JobClient",
    "JobResult",
    "NotFound",
    "PermissionDenied",
    "QschedError",
    "ResourceExhausted",
    "RunData",
    "Unavailable",
    "Unimplemented",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from qsched.client import JobClient, JobResult
    from qsched.data import RunData
    from qsched.errors import (
        AlreadyExists,
        DeadlineExceeded,
        FailedPrecondition,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        QschedError,
        ResourceExhausted,
        Unavailable,
        Unimplemented,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qsched' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
