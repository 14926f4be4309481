"""Drift of the simulated device's parameters: a qubit's frequency and drive strength wander over
hours on a real fridge. A `Drift` gives each drifting parameter an offset as a function of the
device's elapsed time: a sinusoid (amplitude, period) or a slow random walk (a Gaussian step per
interval, seeded, so the same run gives the same path).

Device time runs `time_scale` times faster than the wall clock (1 simulated hour per wall second at
3600), so a test sees a day of drift in seconds. No drift section in the device model: nothing
drifts (the default model is unchanged)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("sine", "walk")
_CHUNK = 256
# Parameters a drift may move: (section, field) of the device model.
PARAMETERS = {"qubit_frequency_mhz": ("qubit", "frequency_mhz"), "pi_gain": ("qubit", "pi_gain")}


@dataclass(frozen=True)
class ParameterDrift:
    """How one parameter moves. sine: amplitude * sin(2 pi t / period_h + phase). walk: a Gaussian
    step of std `step` every `interval_h`, linearly interpolated between steps, clipped to
    +-`limit` (0: unbounded)."""

    kind: str = "sine"
    amplitude: float = 0.0
    period_h: float = 6.0
    phase_rad: float = 0.0
    step: float = 0.0
    interval_h: float = 0.25
    limit: float = 0.0


@dataclass
class Drift:
    parameters: dict[str, ParameterDrift] = field(default_factory=dict)
    time_scale: float = 1.0  # device seconds per wall-clock second
    seed: int = 0
    clock: Callable[[], float] = time.monotonic  # wall seconds (tests inject one)
    _t0: float | None = None
    _walks: dict[str, list[float]] = field(default_factory=dict)

    def elapsed_h(self) -> float:
        """Device hours since the drift started (the first call)."""
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        return (now - self._t0) * self.time_scale / 3600.0

    def offset(self, name: str, hours: float) -> float:
        p = self.parameters.get(name)
        if p is None:
            return 0.0
        if p.kind == "sine":
            return p.amplitude * math.sin(2 * math.pi * hours / p.period_h + p.phase_rad)
        return self._walk(name, p, hours)

    def offsets(self) -> dict[str, float]:
        hours = self.elapsed_h()
        return {name: self.offset(name, hours) for name in self.parameters}

    def _walk(self, name: str, p: ParameterDrift, hours: float) -> float:
        path = self._walks.setdefault(name, [0.0])
        steps = max(0.0, hours / p.interval_h)
        need = int(steps) + 2
        while len(path) < need:
            # Steps come in seeded chunks of a fixed size: the path does not depend on when it is read.
            chunk = (len(path) - 1) // _CHUNK
            rng = np.random.default_rng([self.seed, sorted(PARAMETERS).index(name), chunk])
            for value in rng.normal(0.0, p.step, size=_CHUNK):
                nxt = path[-1] + float(value)
                if p.limit > 0:
                    nxt = max(-p.limit, min(p.limit, nxt))
                path.append(nxt)
        i = int(steps)
        frac = steps - i
        return path[i] * (1 - frac) + path[i + 1] * frac


def parse_drift(data: dict[str, Any] | None, seed: int) -> Drift | None:
    """The device model's `drift:` section (None: no drift)."""
    if not data:
        return None
    data = dict(data)
    time_scale = float(data.pop("time_scale", 1.0))
    if time_scale <= 0:
        raise ValueError("device model: drift.time_scale must be positive")
    parameters: dict[str, ParameterDrift] = {}
    known = {f for f in ParameterDrift.__dataclass_fields__}
    for name, spec in data.items():
        if name not in PARAMETERS:
            raise ValueError(
                f"device model: drift of {name!r} is not supported (known: {', '.join(sorted(PARAMETERS))})"
            )
        spec = dict(spec or {})
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"device model: unknown key(s) in drift.{name}: {', '.join(unknown)}")
        p = ParameterDrift(**spec)
        if p.kind not in KINDS:
            raise ValueError(f"device model: drift.{name}.kind must be one of {', '.join(KINDS)}")
        if p.period_h <= 0 or p.interval_h <= 0:
            raise ValueError(f"device model: drift.{name} needs a positive period_h and interval_h")
        parameters[name] = p
    return Drift(parameters, time_scale, seed)
