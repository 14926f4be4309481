"""Calibration definitions: the content of the `calibrations` config type (YAML), versioned in the
config service like every other config. Pure parsing and checking; no I/O.

    on_failure: hold              # hold | fail: what a failed chain does to the jobs waiting on it
                                  # (or per device: {default: hold, qick: fail})
    yield_to: []                  # what a running job may be asked to yield to between averaging
                                  # rounds: calibration, priority (or per device: {qick: [calibration]})
    calibrations:
      qubit_frequency:
        experiment: {class: QubitSpectroscopyExperiment, module: qsched_hardware.experiments}
        settings: {expts: 81, reps: 200}     # the experiment's expt config
        updates: {qubit.f_ge_mhz: f_ge_mhz}  # hardware-config key <- fit result (summary key)
        fresh_for_s: 3600                    # how long a passing result stays fresh
        depends_on: []                       # calibrations that must be fresh before it runs
        accept: {f_ge_err_mhz: [0, 0.2]}     # each fit result must lie inside [low, high]
        required: true                       # every lab job on the device needs it
        devices: []                          # empty: every lab device
        every_s: 0                           # > 0: also run periodically, job or not
        in_windows: false                    # also run once in every `calibration` reservation
                                             # window of its devices (at its opening)"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from qsched_scheduler.errors import InvalidArgument

CONFIG_TYPE = "calibrations"
ON_FAILURE = ("hold", "fail")
YIELD_TO = ("calibration", "priority")  # dispatch.lab.YIELD_TRIGGERS
_KEYS = {
    "experiment",
    "settings",
    "updates",
    "fresh_for_s",
    "depends_on",
    "accept",
    "required",
    "devices",
    "every_s",
    "in_windows",
}


@dataclass(frozen=True)
class Calibration:
    name: str
    experiment_class: str
    experiment_module: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    updates: Mapping[str, str] = field(default_factory=dict)  # hardware key -> summary key
    fresh_for_s: float = 3600.0
    depends_on: tuple[str, ...] = ()
    accept: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    required: bool = False
    devices: tuple[str, ...] = ()
    every_s: float = 0.0  # periodic: run when the last pass is this old, even with no job waiting
    in_windows: bool = False  # run once in every `calibration` reservation window of its devices

    def on(self, device: str) -> bool:
        return not self.devices or device in self.devices


@dataclass(frozen=True)
class Acceptance:
    passed: bool
    problems: tuple[str, ...] = ()
    updates: Mapping[str, float] = field(default_factory=dict)  # hardware key -> value, when passed


@dataclass(frozen=True)
class Definitions:
    calibrations: Mapping[str, Calibration] = field(default_factory=dict)
    on_failure: str = "hold"  # the default
    revision_id: str = ""  # the config revision they came from
    on_failure_by_device: Mapping[str, str] = field(default_factory=dict)
    yield_to: frozenset[str] = frozenset()  # the default: never interrupt a running job
    yield_to_by_device: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def yield_to_on(self, device: str) -> frozenset[str]:
        """What a running job of `device` may be asked to yield to (docs/calibration.md)."""
        return self.yield_to_by_device.get(device, self.yield_to)

    def failure_mode(self, device: str) -> str:
        """hold | fail: what a failed chain does to the jobs of `device` waiting on it."""
        return self.on_failure_by_device.get(device, self.on_failure)

    def get(self, name: str) -> Calibration | None:
        return self.calibrations.get(name)

    def required_on(self, device: str) -> tuple[str, ...]:
        return tuple(sorted(c.name for c in self.calibrations.values() if c.required and c.on(device)))

    def chain(self, names: Iterable[str]) -> list[str]:
        """`names` and everything they depend on, dependencies first (each once)."""
        out: list[str] = []

        def visit(name: str) -> None:
            if name in out:
                return
            for dep in self.calibrations[name].depends_on:
                visit(dep)
            out.append(name)

        for name in names:
            if name in self.calibrations:
                visit(name)
        return out


def check(calibration: Calibration, summary: Mapping[str, float]) -> Acceptance:
    """The acceptance check of one run: every bound holds and every updated key has a finite fit
    value. A result that fails writes nothing."""
    problems: list[str] = []
    for key, (low, high) in sorted(calibration.accept.items()):
        value = summary.get(key)
        if value is None or not math.isfinite(value):
            problems.append(f"{key}: no fit value")
        elif not low <= value <= high:
            problems.append(f"{key} = {value:.6g} outside [{low:g}, {high:g}]")
    updates: dict[str, float] = {}
    for hw_key, summary_key in sorted(calibration.updates.items()):
        value = summary.get(summary_key)
        if value is None or not math.isfinite(value):
            problems.append(f"{summary_key}: no fit value for {hw_key}")
        else:
            updates[hw_key] = float(value)
    if problems:
        return Acceptance(False, tuple(problems))
    return Acceptance(True, (), updates)


def parse(content: bytes | str, revision_id: str = "") -> Definitions:
    """Raises InvalidArgument (INVALID_CALIBRATIONS) naming the first problem."""
    try:
        data = yaml.safe_load(content) or {}
    except yaml.YAMLError as exc:
        raise _invalid(f"not YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise _invalid("the top level must be a mapping")
    unknown = sorted(set(data) - {"on_failure", "calibrations", "yield_to"})
    if unknown:
        raise _invalid(f"unknown key(s): {', '.join(unknown)}")
    raw_failure = data.get("on_failure", "hold")
    # One mode for every device, or per device: {default: hold, qick: fail}.
    modes = dict(raw_failure) if isinstance(raw_failure, dict) else {"default": raw_failure}
    for device, mode in modes.items():
        if mode not in ON_FAILURE:
            raise _invalid(f"on_failure ({device}) must be one of {', '.join(ON_FAILURE)}")
    on_failure = str(modes.pop("default", "hold"))
    raw = data.get("calibrations") or {}
    if not isinstance(raw, dict):
        raise _invalid("calibrations must be a mapping of name to definition")
    out = {str(name): _one(str(name), spec) for name, spec in raw.items()}
    for cal in out.values():
        for dep in cal.depends_on:
            if dep not in out:
                raise _invalid(f"{cal.name}: depends on unknown calibration {dep!r}")
    _check_cycles(out)
    yield_to = _yield_to(data.get("yield_to"))
    return Definitions(
        out,
        on_failure,
        revision_id,
        {str(k): str(v) for k, v in modes.items()},
        yield_to.pop("default", frozenset()),
        yield_to,
    )


def _yield_to(raw: Any) -> dict[str, frozenset[str]]:
    """`yield_to`: a list for every device, or per device ({default: [...], qick: [...]})."""
    if raw is None:
        return {}
    by_device = dict(raw) if isinstance(raw, dict) else {"default": raw}
    out: dict[str, frozenset[str]] = {}
    for device, triggers in by_device.items():
        items = [triggers] if isinstance(triggers, str) else triggers
        if not isinstance(items, list | tuple) or any(t not in YIELD_TO for t in items):
            raise _invalid(f"yield_to ({device}) must be a list of {', '.join(YIELD_TO)}")
        out[str(device)] = frozenset(str(t) for t in items)
    return out


def _one(name: str, spec: Any) -> Calibration:
    if not isinstance(spec, dict):
        raise _invalid(f"{name}: must be a mapping")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise _invalid(f"{name}: unknown key(s): {', '.join(unknown)}")
    experiment = spec.get("experiment") or {}
    if not isinstance(experiment, dict) or not experiment.get("class"):
        raise _invalid(f"{name}: experiment needs a class (and a module)")
    fresh = float(spec.get("fresh_for_s", 3600))
    if fresh <= 0:
        raise _invalid(f"{name}: fresh_for_s must be positive")
    every = float(spec.get("every_s", 0) or 0)
    if every < 0:
        raise _invalid(f"{name}: every_s must not be negative")
    accept: dict[str, tuple[float, float]] = {}
    for key, bounds in (spec.get("accept") or {}).items():
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise _invalid(f"{name}: accept.{key} must be [low, high]")
        accept[str(key)] = (float(bounds[0]), float(bounds[1]))
    return Calibration(
        name=name,
        experiment_class=str(experiment["class"]),
        experiment_module=str(experiment.get("module", "qsched_hardware.experiments")),
        settings=dict(spec.get("settings") or {}),
        updates={str(k): str(v) for k, v in (spec.get("updates") or {}).items()},
        fresh_for_s=fresh,
        depends_on=tuple(str(d) for d in spec.get("depends_on") or ()),
        accept=accept,
        required=bool(spec.get("required", False)),
        devices=tuple(str(d) for d in spec.get("devices") or ()),
        every_s=every,
        in_windows=bool(spec.get("in_windows", False)),
    )


def _check_cycles(calibrations: Mapping[str, Calibration]) -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise _invalid(f"dependency cycle: {' -> '.join([*path, name])}")
        if name in done:
            return
        for dep in calibrations[name].depends_on:
            visit(dep, (*path, name))
        done.add(name)

    for name in calibrations:
        visit(name, ())


def _invalid(problem: str) -> InvalidArgument:
    return InvalidArgument("INVALID_CALIBRATIONS", f"calibration definitions: {problem}", problem=problem)
