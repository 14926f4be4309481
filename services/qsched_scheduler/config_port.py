"""What the scheduler needs from config versioning: pin the revisions a run uses.

The gRPC adapter is configs_client.GrpcConfigPinner; tests use fakes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PinnedConfig:
    config_type: str
    revision_id: str
    sha256: str


class ConfigsUnavailable(Exception):
    """The config service could not be reached; nothing was pinned."""


class PinRefused(Exception):
    """The config service cannot pin what the job asks for (e.g. no main revision)."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class ConfigPinner(Protocol):
    async def pin(
        self, job_id: str, revision_ids: Mapping[str, str], overrides: Mapping[str, str], creator: str
    ) -> list[PinnedConfig]:
        """Pin, for this run, the main revision of every required config type, or the
        revision the job named, or its inline override (stored as a new revision)."""

    async def close(self) -> None: ...
