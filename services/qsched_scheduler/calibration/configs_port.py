"""What calibration needs from the config service: the definitions (main of the `calibrations`
config type) and pushing a passing fit's updates as a new main hardware config. The gRPC adapter is
configs_client.GrpcCalibrationConfigs (it calls as the calibrator service principal); tests use a
fake. `apply_updates` is the pure part: dotted keys into the YAML document."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

HARDWARE_CONFIG = "hardware_config"


@dataclass(frozen=True)
class Pushed:
    revision_id: str
    changed: bool  # False: the values were main already


@dataclass(frozen=True)
class DefinitionsFile:
    revision_id: str
    content: bytes


class CalibrationConfigs(Protocol):
    async def definitions(self) -> DefinitionsFile | None:
        """The main revision of the `calibrations` type (None: there is none)."""

    async def push_updates(self, updates: Mapping[str, float], job_id: str, calibration: str) -> Pushed:
        """Apply `updates` (dotted keys) to main hardware_config and push the result as the new main,
        recording the job that produced it. Raises ConfigsUnavailable / PinRefused."""

    async def close(self) -> None: ...


def apply_updates(content: bytes, updates: Mapping[str, float]) -> bytes:
    """The hardware config YAML with each dotted key set (missing sections are created)."""
    doc: Any = yaml.safe_load(content) or {}
    if not isinstance(doc, dict):
        raise ValueError("the hardware config is not a YAML mapping")
    for key, value in sorted(updates.items()):
        parts = key.split(".")
        node = doc
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return yaml.safe_dump(doc, sort_keys=False).encode()
