"""Qubit spectroscopy: a long, weak rectangular probe on the qubit with swept frequency, then
readout; the Lorentzian line gives f_ge."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.fits import fit_lorentzian, project_iq


class QubitSpectroscopyExperiment(QickExperiment):
    NAME = "qubit_spectroscopy"
    X_LABEL = "qubit drive frequency"
    UNITS = "MHz"
    DEFAULTS = {
        "start": lambda hw: float(hw["qubit"]["f_ge_mhz"]) - 4.0,
        "stop": lambda hw: float(hw["qubit"]["f_ge_mhz"]) + 4.0,
        "step": None,
        "expts": 161,
        "gain": 0.02,
        "length": 2.0,  # probe length, us
    }

    def qubit_frequency_hint(self) -> float:
        return (
            float(self.p["start"])
            if isinstance(self.p.get("start"), (int, float))
            else super().qubit_frequency_hint()
        )

    def check(self, c: Checker) -> None:
        c.freq("expt.start", self.p["start"], self.q["gen"])
        c.freq("expt.stop", self.p["stop"], self.q["gen"])
        c.gain("expt.gain", self.p["gain"])
        c.pulse_length("expt.length", self.p["length"], self.q["gen"])

    def declare(self, prog) -> None:
        prog.add_pulse(
            ch=self.q["gen"],
            name="probe",
            style="const",
            freq=QickSweep1D("sweep", float(self.p["start"]), float(self.p["stop"])),
            phase=0,
            gain=float(self.p["gain"]),
            length=float(self.p["length"]),
        )

    def play(self, prog) -> None:
        prog.pulse(ch=self.q["gen"], name="probe", t=0)

    def xpts(self, prog) -> np.ndarray:
        return np.asarray(prog.get_pulse_param("probe", "freq", as_array=True), float)

    def analyze(self, x, avgi, avgq):
        signal = project_iq(avgi, avgq)
        fit = fit_lorentzian(x, signal)
        self.record_fit(signal, fit)
        return {"f_ge_mhz": fit["x0"], "f_ge_err_mhz": fit["x0_err"], "linewidth_mhz": fit["fwhm"]}, {
            "qubit.f_ge_mhz": round(fit["x0"], 4)
        }
