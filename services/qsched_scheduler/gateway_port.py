"""What the scheduler needs from the provider gateway, in domain terms: send circuits
and benchmarks to provider devices, follow them, cancel them, fetch their results.

The gRPC adapter is gateway_client.GrpcProviderGateway; tests use fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from qsched_core.errors import PeerRejected, PeerUnavailable
from qsched_scheduler.domain import Payload

ProviderState = Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
TERMINAL_PROVIDER_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


@dataclass(frozen=True)
class ProviderDevice:
    name: str  # "<provider>:<device>"
    simulator: bool
    qubits: int
    status: str


@dataclass(frozen=True)
class Submitted:
    task_ids: tuple[str, ...]
    submission_id: str


@dataclass(frozen=True)
class ProviderStatus:
    task_id: str
    state: ProviderState
    queue_position: int = 0
    message: str = ""
    provider_status: str = ""  # the provider's own status word (e.g. QUEUED, ready, INITIALIZING)


class GatewayUnavailable(PeerUnavailable):
    """The gateway could not be reached; nothing was decided."""


class GatewayRejected(PeerRejected):
    """The gateway refused the request; `reason` is its ErrorInfo reason, `code` the status name,
    `metadata` its ErrorInfo metadata where the client kept it."""

    metadata: dict[str, str] = {}


class ProviderGateway(Protocol):
    async def devices(self, names: tuple[str, ...] = ()) -> list[ProviderDevice]:
        """Every provider device, or only those of `names` that exist (a quick lookup)."""

    async def estimate(self, device: str, payload: Payload) -> Any:
        """The gateway's estimate, passed through to the caller as it is."""

    async def validate(self, device: str, payload: Payload) -> None:
        """Raise GatewayRejected when Submit would refuse the payload (it sends nothing)."""

    async def submit(self, device: str, payload: Payload, job_id: str, request_id: str) -> Submitted:
        """Send the payload; the same request_id returns the first submission (idempotent)."""

    def watch(self, device: str, submitted: Submitted) -> AsyncIterator[ProviderStatus]:
        """Statuses of the submission's tasks until every task is terminal."""

    async def cancel(self, device: str, submitted: Submitted) -> None: ...

    async def fetch_result(self, device: str, submitted: Submitted) -> str:
        """The results as JSON: {"tasks": [TaskResult as JSON...], "benchmark_results_json": str,
        "scoring_json": str}."""

    async def close(self) -> None: ...
