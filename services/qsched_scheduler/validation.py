"""Checks a submission before anything is written."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qsched_core.json_bounds import TooDeep, loads_bounded
from qsched_core.payloads import BenchmarkConfig, CircuitProgram, LabExperiment
from qsched_core.payloads import Payload as TypedPayload
from qsched_scheduler.domain import (
    MAX_LABEL_KEY_LENGTH,
    MAX_LABEL_VALUE_LENGTH,
    MAX_LABELS,
    MAX_OWNER_LENGTH,
    MAX_PAYLOAD_BYTES,
    MAX_PRIORITY,
    MAX_REQUEST_ID_LENGTH,
    MIN_PRIORITY,
    JobKind,
    NewJob,
    Payload,
)
from qsched_scheduler.errors import InvalidArgument, NotFound

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class DeviceRoute:
    """A device the scheduler queues for and the kinds of job it accepts."""

    name: str
    kinds: frozenset[JobKind]


@dataclass(frozen=True)
class Submission:
    device: str
    payload: Payload | None
    priority: int
    owner: str
    request_id: str = ""
    labels: Mapping[str, str] | None = None
    payload_bytes: int = 0
    queued_limit: int = 0  # the owner's queued-jobs quota (NewJob.queued_limit)


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = loads_bounded(text) if text else {}
    except json.JSONDecodeError as exc:
        raise InvalidArgument("INVALID_JSON", f"{field} is not valid JSON: {exc.msg}", field=field) from exc
    except TooDeep as exc:
        raise InvalidArgument("INVALID_JSON", f"{field} is {exc}", field=field) from exc
    if not isinstance(value, dict):
        raise InvalidArgument("INVALID_JSON", f"{field} must be a JSON object", field=field)
    return value


def _check_lab(experiment: TypedPayload) -> None:
    assert isinstance(experiment, LabExperiment)
    cls, module = experiment.experiment_class, experiment.experiment_module
    if not _IDENTIFIER.match(cls):
        raise InvalidArgument(
            "INVALID_EXPERIMENT", f"experiment_class {cls!r} is not a class name", field="experiment_class"
        )
    if not _MODULE.match(module):
        raise InvalidArgument(
            "INVALID_EXPERIMENT",
            f"experiment_module {module!r} is not a module path",
            field="experiment_module",
        )
    _json_object(experiment.expt_config_json, "expt_config_json")
    for name, max_age in experiment.calibrations.items():  # docs/calibration.md
        number = isinstance(max_age, int | float) and not isinstance(max_age, bool)
        if not _IDENTIFIER.match(str(name)) or not number or not 0 <= max_age < float("inf"):
            raise InvalidArgument(
                "INVALID_CALIBRATION_NEED",
                f"calibrations[{name!r}] = {max_age!r}: a calibration name and an age of 0 or more seconds",
                field="calibrations",
            )


def _check_circuit(program: TypedPayload) -> None:
    assert isinstance(program, CircuitProgram)
    if not program.qasm and not program.qpy:
        raise InvalidArgument("INVALID_PROGRAM", "a circuit job needs at least one program", field="qasm")
    if program.shots <= 0:
        raise InvalidArgument("INVALID_SHOTS", "shots must be positive", field="shots")
    _json_object(program.compiler_options_json, "compiler_options_json")


def _check_benchmark(config: TypedPayload) -> None:
    assert isinstance(config, BenchmarkConfig)
    if bool(config.config_json) == bool(config.suite_json):
        raise InvalidArgument(
            "INVALID_BENCHMARK",
            "a benchmark job needs exactly one of config_json and suite_json",
            field="config_json",
        )
    if config.config_json:
        _json_object(config.config_json, "config_json")
    else:
        _json_object(config.suite_json, "suite_json")


_CHECKS: dict[JobKind, Callable[[TypedPayload], None]] = {
    JobKind.LAB_EXPERIMENT: _check_lab,
    JobKind.CIRCUIT: _check_circuit,
    JobKind.BENCHMARK: _check_benchmark,
}


def validate_submission(sub: Submission, devices: Mapping[str, DeviceRoute]) -> NewJob:
    if not sub.device:
        raise InvalidArgument("DEVICE_REQUIRED", "device is required", field="device")
    route = devices.get(sub.device)
    if route is None:
        # A few close names, not the whole list (the gateway knows dozens of devices).
        close = difflib.get_close_matches(sub.device, sorted(devices), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise NotFound(
            "DEVICE_NOT_FOUND",
            f"unknown device {sub.device!r}; {hint}`qsched devices` lists them",
            device=sub.device,
        )
    if sub.payload is None:
        raise InvalidArgument("PAYLOAD_REQUIRED", "payload is empty: set one of its members", field="payload")
    if sub.payload_bytes > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(
            "PAYLOAD_TOO_LARGE",
            f"payload is {sub.payload_bytes} bytes; the limit is {MAX_PAYLOAD_BYTES}",
            size=sub.payload_bytes,
            limit=MAX_PAYLOAD_BYTES,
        )
    if sub.payload.kind not in route.kinds:
        raise InvalidArgument(
            "KIND_NOT_SUPPORTED",
            f"device {sub.device!r} does not run {sub.payload.kind.value} jobs",
            device=sub.device,
            kind=sub.payload.kind.value,
        )
    _CHECKS[sub.payload.kind](sub.payload.typed)
    if not MIN_PRIORITY <= sub.priority <= MAX_PRIORITY:
        raise InvalidArgument(
            "INVALID_PRIORITY",
            f"priority {sub.priority} is outside [{MIN_PRIORITY}, {MAX_PRIORITY}]",
            priority=sub.priority,
        )
    owner = sub.owner.strip()
    if not owner or len(owner) > MAX_OWNER_LENGTH:
        raise InvalidArgument(
            "INVALID_OWNER", f"owner must be 1-{MAX_OWNER_LENGTH} characters", field="owner"
        )
    if len(sub.request_id) > MAX_REQUEST_ID_LENGTH:
        raise InvalidArgument(
            "INVALID_REQUEST_ID", f"request_id is longer than {MAX_REQUEST_ID_LENGTH}", field="request_id"
        )
    labels = dict(sub.labels or {})
    if len(labels) > MAX_LABELS:
        raise InvalidArgument("TOO_MANY_LABELS", f"at most {MAX_LABELS} labels", field="labels")
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_KEY_LENGTH:
            raise InvalidArgument(
                "LABEL_TOO_LONG", f"a label key has 1 to {MAX_LABEL_KEY_LENGTH} characters", field="labels"
            )
        if len(value) > MAX_LABEL_VALUE_LENGTH:
            raise InvalidArgument(
                "LABEL_TOO_LONG",
                f"label {key!r}: a value has at most {MAX_LABEL_VALUE_LENGTH} characters",
                field=f"labels[{key}]",
            )
    return NewJob(
        owner=owner,
        device=sub.device,
        priority=sub.priority,
        payload=sub.payload,
        request_id=sub.request_id,
        labels=labels,
        queued_limit=sub.queued_limit,
    )
