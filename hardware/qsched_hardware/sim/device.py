"""The simulated device's true parameters (a transmon and its readout resonator), from YAML.

Only the simulated board reads these. Experiments have to discover them, exactly as on a
fridge; the hardware config the executor uses is a separate file with its own (estimated) values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from qsched_hardware.sim.drift import Drift, parse_drift

DEFAULT_DEVICE_MODEL = Path(__file__).with_name("default_device.yml")


@dataclass(frozen=True)
class Wiring:
    """Which board channels are cabled to the device."""

    qubit_gen: int = 2  # generator driving the qubit
    readout_gen: int = 0  # generator driving the readout resonator
    readout_ro: int = 0  # readout (ADC) channel seeing the resonator's output


@dataclass(frozen=True)
class Qubit:
    frequency_mhz: float = 4512.35
    t1_us: float = 42.0
    t2_us: float = 28.0  # coherence time seen by Ramsey and echo (Markovian dephasing)
    thermal_population: float = 0.01
    # The drive strength, given as the pulse that performs a pi rotation on resonance:
    # a Gaussian of standard deviation sigma_us, truncated to length_us, at this gain.
    pi_gain: float = 0.437
    pi_sigma_us: float = 0.025
    pi_length_us: float = 0.1

    def rabi_mhz_full_gain(self) -> float:
        """Rabi frequency (MHz) of a rectangular drive at gain 1.0 (on resonance)."""
        s, length = self.pi_sigma_us, self.pi_length_us
        area = s * math.sqrt(2 * math.pi) * math.erf(length / (2 * math.sqrt(2) * s))
        return 1.0 / (2.0 * self.pi_gain * area)


@dataclass(frozen=True)
class Resonator:
    frequency_mhz: float = 7102.37  # with the qubit in |g>
    linewidth_mhz: float = 0.8  # kappa/2pi, full width at half minimum
    dispersive_shift_mhz: float = -0.45  # chi: f(|e>) = f(|g>) + 2*chi


@dataclass(frozen=True)
class Readout:
    amplitude_adc: float = 1200.0  # averaged |IQ| at gain 1.0, far from resonance, full window overlap
    noise_adc: float = 40.0  # per-shot std of I and Q for a 1 us window (scales as 1/sqrt(window))
    signal_delay_us: float = 0.15  # DAC -> device -> ADC
    phase_deg: float = 35.0  # fixed phase of the return path


@dataclass(frozen=True)
class DeviceModel:
    seed: int = 20260113
    wiring: Wiring = field(default_factory=Wiring)
    qubit: Qubit = field(default_factory=Qubit)
    resonator: Resonator = field(default_factory=Resonator)
    readout: Readout = field(default_factory=Readout)
    # 0 = simulate as fast as possible; 1 = each round takes the program's real duration
    realtime_factor: float = 0.0
    source: str = ""
    drift: Drift | None = None  # None: the parameters stay put (the default model)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed, "realtime_factor": self.realtime_factor}
        for name in ("wiring", "qubit", "resonator", "readout"):
            part = getattr(self, name)
            out[name] = {f.name: getattr(part, f.name) for f in fields(part)}
        return out


def _section(cls, data: dict[str, Any] | None, where: str):
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"device model: unknown key(s) in {where}: {', '.join(unknown)}")
    return cls(**data)


def load_device_model(path: str | Path | None = None) -> DeviceModel:
    path = Path(path) if path else DEFAULT_DEVICE_MODEL
    data = yaml.safe_load(path.read_text()) or {}
    top = {"seed", "wiring", "qubit", "resonator", "readout", "realtime_factor", "drift"}
    unknown = sorted(set(data) - top)
    if unknown:
        raise ValueError(f"device model {path}: unknown key(s): {', '.join(unknown)}")
    return DeviceModel(
        seed=int(data.get("seed", DeviceModel.seed)),
        wiring=_section(Wiring, data.get("wiring"), "wiring"),
        qubit=_section(Qubit, data.get("qubit"), "qubit"),
        resonator=_section(Resonator, data.get("resonator"), "resonator"),
        readout=_section(Readout, data.get("readout"), "readout"),
        realtime_factor=float(data.get("realtime_factor", 0.0)),
        source=str(path),
        drift=parse_drift(data.get("drift"), int(data.get("seed", DeviceModel.seed))),
    )
