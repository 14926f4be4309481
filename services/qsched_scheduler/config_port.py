"""What the scheduler needs from config versioning: pin the revisions a run uses.

The gRPC adapter is configs_client.GrpcConfigPinner; tests use fakes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from qsched_core.errors import PeerRejected, PeerUnavailable


@dataclass(frozen=True)
class PinnedConfig:
    config_type: str
    revision_id: str
    sha256: str


class ConfigsUnavailable(PeerUnavailable):
    """The config service could not be reached; nothing was pinned."""


class PinRefused(PeerRejected):
    """The config service cannot pin what the job asks for (e.g. no main revision)."""


class ConfigPinner(Protocol):
    async def pin(
        self, job_id: str, revision_ids: Mapping[str, str], overrides: Mapping[str, str], creator: str
    ) -> list[PinnedConfig]:
        """Pin, for this run, the main revision of every required config type, or the
        revision the job named, or its inline override (stored as a new revision)."""

    async def close(self) -> None: ...
