"""What a job runs, typed: one class per kind, from submit to the executor or the gateway.

The scheduler stores a payload as its kind plus a JSON object (`to_body` / `from_body`); the
layout of that object is the one the job database has always held, so no data migration is
needed. Nothing here knows gRPC or SQL."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class JobKind(enum.Enum):
    LAB_EXPERIMENT = "LAB_EXPERIMENT"
    CIRCUIT = "CIRCUIT"
    BENCHMARK = "BENCHMARK"


@dataclass(frozen=True)
class LabExperiment:
    """An experiment class run by a lab device's executor (the seed's submit_job arguments)."""

    experiment_class: str
    experiment_module: str
    expt_config_json: str = "{}"
    # Config revisions to use instead of the main ones, by config type.
    config_revisions: Mapping[str, str] = field(default_factory=dict)
    # Inline config content (YAML, JSON or CSV text) to use instead of main, by config type.
    config_overrides: Mapping[str, str] = field(default_factory=dict)
    # The experiment repository's revision the job named ("" = HEAD), the commit it resolved to
    # at submit ("" = not from the repository) and whether the working tree had uncommitted
    # changes on top of it then (docs/experiments.md, "The experiment repository").
    experiment_revision: str = ""
    experiment_commit: str = ""
    experiment_tree_dirty: bool = False
    # Scheduler settings, not the executor's: calibrations the job needs fresh ({name: oldest
    # accepted age in s}, docs/calibration.md) and whether it may be asked to yield at safe points.
    calibrations: Mapping[str, float] = field(default_factory=dict)
    yield_at_safe_points: bool = False

    kind = JobKind.LAB_EXPERIMENT

    @property
    def pins_main(self) -> bool:
        """True when every config comes from its main revision (no named revision, no override)."""
        return not self.config_revisions and not self.config_overrides


@dataclass(frozen=True)
class CircuitProgram:
    """Circuits for a provider device: OpenQASM sources and/or QPY blobs."""

    qasm: tuple[str, ...] = ()
    shots: int = 0
    compiler_options_json: str = ""
    qpy: tuple[bytes, ...] = ()

    kind = JobKind.CIRCUIT


@dataclass(frozen=True)
class BenchmarkConfig:
    """A metriq-gym benchmark config, or a suite of them (exactly one of the two is set)."""

    config_json: str = ""
    suite_json: str = ""

    kind = JobKind.BENCHMARK


Payload = LabExperiment | CircuitProgram | BenchmarkConfig


def to_body(payload: Payload) -> dict[str, Any]:
    """The JSON object the job database stores for a payload."""
    if isinstance(payload, LabExperiment):
        body: dict[str, Any] = {
            "experiment_class": payload.experiment_class,
            "experiment_module": payload.experiment_module,
            "expt_config_json": payload.expt_config_json,
            "config_revisions": dict(payload.config_revisions),
            "config_overrides": dict(payload.config_overrides),
        }
        # Only when set: the bodies of jobs without these settings stay as they were.
        if payload.calibrations:
            body["calibrations"] = dict(payload.calibrations)
        if payload.experiment_revision:
            body["experiment_revision"] = payload.experiment_revision
        if payload.experiment_commit:
            body["experiment_commit"] = payload.experiment_commit
        if payload.experiment_tree_dirty:
            body["experiment_tree_dirty"] = True
        if payload.yield_at_safe_points:
            body["yield_at_safe_points"] = True
        return body
    if isinstance(payload, CircuitProgram):
        return {
            "qasm": list(payload.qasm),
            "shots": payload.shots,
            "compiler_options_json": payload.compiler_options_json,
            "qpy_hex": [blob.hex() for blob in payload.qpy],
        }
    return {"config_json": payload.config_json, "suite_json": payload.suite_json}


def from_body(kind: JobKind, body: Mapping[str, Any]) -> Payload:
    """A payload from the JSON object the job database stores (inverse of `to_body`)."""
    if kind is JobKind.LAB_EXPERIMENT:
        return LabExperiment(
            experiment_class=body.get("experiment_class", ""),
            experiment_module=body.get("experiment_module", ""),
            # As stored: "" (no settings) is kept, so a body read and written back is unchanged.
            expt_config_json=body.get("expt_config_json", "{}"),
            config_revisions=dict(body.get("config_revisions") or {}),
            config_overrides=dict(body.get("config_overrides") or {}),
            experiment_revision=body.get("experiment_revision", ""),
            experiment_commit=body.get("experiment_commit", ""),
            experiment_tree_dirty=bool(body.get("experiment_tree_dirty", False)),
            calibrations=dict(body.get("calibrations") or {}),
            yield_at_safe_points=bool(body.get("yield_at_safe_points", False)),
        )
    if kind is JobKind.CIRCUIT:
        return CircuitProgram(
            qasm=tuple(body.get("qasm") or ()),
            shots=int(body.get("shots", 0)),
            compiler_options_json=body.get("compiler_options_json", ""),
            qpy=tuple(bytes.fromhex(h) for h in body.get("qpy_hex") or ()),
        )
    return BenchmarkConfig(config_json=body.get("config_json", ""), suite_json=body.get("suite_json", ""))
