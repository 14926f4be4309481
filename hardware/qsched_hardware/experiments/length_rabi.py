"""Length Rabi: a rectangular pulse on the qubit with swept length; the fit gives the pi length
and the Rabi frequency at that gain."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.fits import fit_rabi, project_iq


class LengthRabiExperiment(QickExperiment):
    NAME = "length_rabi"
    X_LABEL = "pulse length"
    UNITS = "us"
    DEFAULTS = {
        "start": 0.01,
        "stop": 0.5,
        "step": None,
        "expts": 101,
        "gain": 0.1,
        "freq": lambda hw: float(hw["qubit"]["f_ge_mhz"]),
    }

    def check(self, c: Checker) -> None:
        p = self.p
        c.pulse_length("expt.start", p["start"], self.q["gen"])
        c.pulse_length("expt.stop", p["stop"], self.q["gen"])
        if (
            isinstance(p["start"], (int, float))
            and isinstance(p["stop"], (int, float))
            and p["stop"] <= p["start"]
        ):
            c.add("expt.stop", "must be greater than expt.start")
        c.gain("expt.gain", p["gain"])
        c.freq("expt.freq", p["freq"], self.q["gen"])

    def declare(self, prog) -> None:
        p = self.p
        prog.add_pulse(
            ch=self.q["gen"],
            name="drive",
            style="const",
            freq=float(p["freq"]),
            phase=0,
            gain=float(p["gain"]),
            length=QickSweep1D("sweep", float(p["start"]), float(p["stop"])),
        )

    def play(self, prog) -> None:
        prog.pulse(ch=self.q["gen"], name="drive", t=0)

    def xpts(self, prog) -> np.ndarray:
        return np.asarray(prog.get_pulse_param("drive", "length", as_array=True), float)

    def analyze(self, x, avgi, avgq):
        signal = project_iq(avgi, avgq)
        fit = fit_rabi(x, signal)
        self.record_fit(signal, fit)
        t_pi = fit["x_pi"]
        return {"pi_length_us": t_pi, "pi_length_err_us": fit["x_pi_err"], "rabi_mhz": 1.0 / (2 * t_pi)}, {}
