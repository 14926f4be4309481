"""Amplitude Rabi: a Gaussian pulse on the qubit with swept gain; the fit gives the pi gain."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.fits import fit_rabi, project_iq


class AmplitudeRabiExperiment(QickExperiment):
    NAME = "amplitude_rabi"
    X_LABEL = "pulse gain"
    UNITS = "fraction of full scale"
    DEFAULTS = {
        "start": 0.0,
        "stop": lambda hw: min(1.0, 2.2 * float(hw["qubit"]["pi_pulse"]["gain"])),
        "step": None,
        "expts": 101,
        "sigma_test": lambda hw: float(hw["qubit"]["pi_pulse"]["sigma_us"]),  # seed name, us
        "length_test": lambda hw: float(hw["qubit"]["pi_pulse"]["length_us"]),
        "pulse_type": "gauss",
        "freq": lambda hw: float(hw["qubit"]["f_ge_mhz"]),
    }

    def check(self, c: Checker) -> None:
        p = self.p
        c.gain("expt.start", p["start"])
        c.gain("expt.stop", p["stop"])
        if p["pulse_type"] not in ("gauss", "const"):
            c.add("expt.pulse_type", f"must be 'gauss' or 'const', got {p['pulse_type']!r}")
        c.freq("expt.freq", p["freq"], self.q["gen"])
        if c.number("expt.sigma_test", p["sigma_test"], 1e-4, 10):
            c.pulse_length("expt.length_test", p["length_test"], self.q["gen"], envelope=True)

    def declare(self, prog) -> None:
        p = self.p
        gain = QickSweep1D("sweep", float(p["start"]), float(p["stop"]))
        if p["pulse_type"] == "gauss":
            prog.add_gauss(
                ch=self.q["gen"],
                name="drive_env",
                sigma=float(p["sigma_test"]),
                length=float(p["length_test"]),
            )
            prog.add_pulse(
                ch=self.q["gen"],
                name="drive",
                style="arb",
                envelope="drive_env",
                freq=float(p["freq"]),
                phase=0,
                gain=gain,
            )
        else:
            prog.add_pulse(
                ch=self.q["gen"],
                name="drive",
                style="const",
                freq=float(p["freq"]),
                phase=0,
                gain=gain,
                length=float(p["length_test"]),
            )

    def play(self, prog) -> None:
        prog.pulse(ch=self.q["gen"], name="drive", t=0)

    def xpts(self, prog) -> np.ndarray:
        return np.asarray(prog.get_pulse_param("drive", "gain", as_array=True), float)

    def analyze(self, x, avgi, avgq):
        signal = project_iq(avgi, avgq)
        fit = fit_rabi(x, signal)
        self.record_fit(signal, fit)
        pi_gain = fit["x_pi"]
        summary = {"pi_gain": pi_gain, "pi_gain_err": fit["x_pi_err"], "pi2_gain": pi_gain / 2}
        updates = {}
        if self.p["pulse_type"] == "gauss":
            updates["qubit.pi_pulse.gain"] = round(pi_gain, 5)
        return summary, updates
