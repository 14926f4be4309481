"""What the scheduler needs from a lab device's executor, in the run contract's domain types
(qsched_core.execution). The gRPC adapter is executor_client.GrpcLabExecutor; unit tests use
tests/support/memory_executor.py, which speaks the same commands in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from qsched_core.errors import PeerRejected, PeerUnavailable
from qsched_core.execution import DataChunk, PinnedRevision, QueueCommand, QueueEvent, Validated, Violation
from qsched_core.payloads import LabExperiment

__all__ = [
    "DataChunk",
    "ExecutorRejected",
    "ExecutorUnavailable",
    "LabExecutor",
    "QueueTransport",
    "RunNotFound",
    "Validated",
    "Violation",
]


class ExecutorUnavailable(PeerUnavailable):
    """The executor could not be reached (or its run queue stream ended); nothing was decided."""


class RunNotFound(Exception):
    """The executor does not know the run or data file."""


class ExecutorRejected(PeerRejected):
    """The executor refused the request; `reason` is its ErrorInfo reason, `code` the canonical
    status name (e.g. PERMISSION_DENIED)."""


class QueueTransport(Protocol):
    """One open run queue stream: commands out, events in (dispatch/run_queue.py pairs them)."""

    async def send(self, command: QueueCommand) -> None:
        """Send a command (raises ExecutorUnavailable when the stream is gone)."""

    async def receive(self) -> QueueEvent:
        """The next event (raises ExecutorUnavailable when the stream ends or breaks)."""

    async def close(self) -> None: ...


class LabExecutor(Protocol):
    async def open_queue(self) -> QueueTransport:
        """Open the run queue stream (a new one replaces the executor's previous one)."""

    async def validate(self, experiment: LabExperiment, configs: Sequence[PinnedRevision] = ()) -> Validated:
        """Check an experiment against the board without running it; its experiment-repository
        revision resolved to a commit (when its code comes from the repository)."""

    def fetch_data(self, task_id: str, name: str = "") -> AsyncIterator[DataChunk]:
        """A run's data file in chunks, by run or by DataRef name (raises RunNotFound)."""

    async def close(self) -> None: ...
