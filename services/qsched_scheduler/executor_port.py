"""What the scheduler needs from a lab device's executor, in domain terms.

The gRPC adapter is executor_client.GrpcLabExecutor; tests use fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from qsched_core.errors import PeerRejected, PeerUnavailable

UpdateKind = Literal["accepted", "started", "progress", "result", "error", "cancelled"]
TERMINAL_UPDATES = frozenset({"result", "error", "cancelled"})


@dataclass(frozen=True)
class ExecRequest:
    job_id: str
    task_id: str
    owner: str
    experiment_class: str
    experiment_module: str
    expt_config_json: str
    configs: tuple[tuple[str, str, str], ...] = ()  # (config_type, revision_id, sha256)
    after_task_id: str = ""  # pipelined dispatch: run right after this run on the executor


@dataclass(frozen=True)
class ExecUpdate:
    kind: UpdateKind
    seq: int = 0
    fraction: float = 0.0
    rounds_done: int = 0
    rounds_total: int = 0
    data_file_path: str = ""
    summary: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    message: str = ""

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_UPDATES


@dataclass(frozen=True)
class DataChunk:
    offset: int
    data: bytes
    total_size: int
    sha256: str = ""  # on the first chunk
    file_name: str = ""


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


class ExecutorUnavailable(PeerUnavailable):
    """The executor could not be reached; nothing was decided about the run."""


class RunNotFound(Exception):
    """The executor does not know the run (it restarted, or never had it)."""


class ExecutorRejected(PeerRejected):
    """The executor refused the request; `reason` is its ErrorInfo reason, `code`
    the canonical status name (e.g. PERMISSION_DENIED)."""


class LabExecutor(Protocol):
    def execute(self, request: ExecRequest) -> AsyncIterator[ExecUpdate]:
        """Start a run and follow it to a terminal update."""

    async def validate(self, request: ExecRequest) -> list[Violation]:
        """Check an experiment against the board without running it."""

    def attach(self, task_id: str, after_seq: int) -> AsyncIterator[ExecUpdate]:
        """Follow a run that is already on the executor (raises RunNotFound)."""

    async def cancel(self, task_id: str, reason: str, only_if_waiting: bool = False) -> bool:
        """Ask the executor to stop a run; True if it will."""

    def fetch_data(self, task_id: str) -> AsyncIterator[DataChunk]:
        """A run's data file in chunks (raises RunNotFound when the executor has none)."""

    async def close(self) -> None: ...
