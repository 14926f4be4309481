"""Physics of the simulated device: a driven, decaying transmon (two levels, Bloch equations)
and a dispersively coupled readout resonator in hanger geometry.

Conventions: Bloch vector (x, y, z), z = +1 in |g>; P(e) = (1 - z) / 2. The qubit is followed in
the frame rotating at its own frequency; a drive at frequency f with DDS phase phi, starting at
time t, acts in its own rotating frame with detuning f - f_q, and the frame change at the pulse
edges carries the phase 2*pi*(f - f_q)*t. This makes Ramsey fringes, detuned Rabi and power-
broadened spectroscopy follow from the pulses alone."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from qsched_hardware.sim.device import DeviceModel

TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class Drive:
    """A pulse reaching the qubit: `envelope` holds complex amplitudes (fraction of full scale,
    gain included) on a uniform grid covering [t0_us, t0_us + duration_us]."""

    t0_us: float
    duration_us: float
    freq_mhz: float
    phase_rad: float
    envelope: np.ndarray  # complex, len >= 1


@dataclass(frozen=True)
class Tone:
    """A pulse on the readout line."""

    t0_us: float
    duration_us: float
    freq_mhz: float
    phase_rad: float
    amplitude: complex  # fraction of full scale (mean over the pulse)


def _rotate(v: tuple[float, float, float], axis: tuple[float, float, float], angle: float):
    """Rotate v about the unit vector axis by angle (Rodrigues)."""
    x, y, z = v
    kx, ky, kz = axis
    c, s = math.cos(angle), math.sin(angle)
    dot = kx * x + ky * y + kz * z
    cx, cy, cz = ky * z - kz * y, kz * x - kx * z, kx * y - ky * x
    return (
        x * c + cx * s + kx * dot * (1 - c),
        y * c + cy * s + ky * dot * (1 - c),
        z * c + cz * s + kz * dot * (1 - c),
    )


def _rotz(v, angle: float):
    x, y, z = v
    c, s = math.cos(angle), math.sin(angle)
    return (x * c - y * s, x * s + y * c, z)


class Transmon:
    def __init__(self, model: DeviceModel):
        q = model.qubit
        self.f_q = q.frequency_mhz
        self.t1 = q.t1_us
        self.t2 = min(q.t2_us, 2 * q.t1_us)
        self.z_eq = 1.0 - 2.0 * q.thermal_population
        self.rabi_full = q.rabi_mhz_full_gain()

    def ground(self):
        return (0.0, 0.0, self.z_eq)

    def relax(self, v, tau: float):
        if tau <= 0:
            return v
        x, y, z = v
        d2 = math.exp(-tau / self.t2)
        d1 = math.exp(-tau / self.t1)
        return (x * d2, y * d2, self.z_eq - (self.z_eq - z) * d1)

    def drive(self, v, d: Drive):
        delta = d.freq_mhz - self.f_q
        n = len(d.envelope)
        slices = n
        max_slices = 64
        # long pulses: enough slices for decay to act during the pulse
        if n > max_slices:
            slices = max_slices
        dt = d.duration_us / slices
        if n != slices:
            edges = np.linspace(0, n, slices + 1).astype(int)
            env = np.array([d.envelope[a:b].mean() if b > a else 0 for a, b in itertools.pairwise(edges)])
        else:
            env = d.envelope
        # into the drive frame
        v = _rotz(v, -TWO_PI * delta * d.t0_us)
        wz = -TWO_PI * delta
        for a in env:
            amp = abs(a)
            omega = TWO_PI * self.rabi_full * amp
            phi = d.phase_rad + (math.atan2(a.imag, a.real) if amp else 0.0)
            wx, wy = omega * math.cos(phi), omega * math.sin(phi)
            norm = math.sqrt(wx * wx + wy * wy + wz * wz)
            if norm > 0:
                v = _rotate(v, (wx / norm, wy / norm, wz / norm), norm * dt)
            v = self.relax(v, dt)
        return _rotz(v, TWO_PI * delta * (d.t0_us + d.duration_us))

    def excited_population(self, drives: list[Drive], t_measure: float, t_start: float) -> float:
        """P(e) at t_measure, starting from thermal equilibrium at t_start."""
        v = self.ground()
        t = t_start
        for d in sorted(drives, key=lambda d: d.t0_us):
            if d.t0_us >= t_measure:
                break
            v = self.relax(v, d.t0_us - t)
            v = self.drive(v, d)
            t = d.t0_us + d.duration_us
        v = self.relax(v, t_measure - t)
        return min(1.0, max(0.0, (1.0 - v[2]) / 2.0))


class ReadoutChain:
    def __init__(self, model: DeviceModel):
        self.res = model.resonator
        self.ro = model.readout

    def response(self, freq_mhz: float, excited: bool) -> complex:
        """Hanger S21 of the resonator with the qubit in |g> or |e>."""
        f_r = self.res.frequency_mhz + (2 * self.res.dispersive_shift_mhz if excited else 0.0)
        half = self.res.linewidth_mhz / 2.0
        return 1.0 - half / (half + 1j * (freq_mhz - f_r))

    def signal(
        self,
        tone: Tone | None,
        window_start_us: float,
        window_us: float,
        demod_offset_mhz: float,
        ro_phase_rad: float,
    ) -> tuple[complex, complex]:
        """Length-normalised IQ the readout accumulates for |g> and |e> (noise-free)."""
        if tone is None or window_us <= 0:
            return 0j, 0j
        start = tone.t0_us + self.ro.signal_delay_us
        end = start + tone.duration_us
        overlap = max(0.0, min(end, window_start_us + window_us) - max(start, window_start_us))
        if overlap <= 0:
            return 0j, 0j
        frac = overlap / window_us
        # a tone off the demodulation frequency averages out over the window
        x = math.pi * demod_offset_mhz * overlap
        smear = 1.0 if abs(x) < 1e-12 else abs(math.sin(x) / x)
        phase = (
            math.radians(self.ro.phase_deg)
            - TWO_PI * tone.freq_mhz * self.ro.signal_delay_us
            + tone.phase_rad
            - ro_phase_rad
        )
        base = (
            self.ro.amplitude_adc * tone.amplitude * frac * smear * complex(math.cos(phase), math.sin(phase))
        )
        return base * self.response(tone.freq_mhz, False), base * self.response(tone.freq_mhz, True)

    def noise_std(self, window_us: float) -> float:
        return self.ro.noise_adc / math.sqrt(max(window_us, 1e-3))
