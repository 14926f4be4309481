"""Resonator spectroscopy: sweep the readout tone (and the readout's demodulation frequency with
it) across the resonator; the dip in |IQ| gives the resonator frequency (qubit in |g>)."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.fits import fit_lorentzian


class ResonatorSpectroscopyExperiment(QickExperiment):
    NAME = "resonator_spectroscopy"
    X_LABEL = "readout frequency"
    UNITS = "MHz"
    SIGNAL_LABEL = "transmitted amplitude |I + iQ|"
    DEFAULTS = {
        "start": lambda hw: float(hw["readout"]["frequency_mhz"]) - 4.0,
        "stop": lambda hw: float(hw["readout"]["frequency_mhz"]) + 4.0,
        "step": None,
        "expts": 161,
        "reps": 200,
        "relax_delay": 10.0,
    }
    COMMON = {"reps": 200, "rounds": 1, "relax_delay": None}

    def __init__(self, soccfg, hardware, expt):
        super().__init__(soccfg, hardware, expt)
        if isinstance(self.p.get("gain"), (int, float)):
            self.ro["gain"] = self.p["gain"]

    def check(self, c: Checker) -> None:
        c.freq("expt.start", self.p["start"], self.ro["gen"])
        c.freq("expt.stop", self.p["stop"], self.ro["gen"])
        if "gain" in self.expt:
            c.gain("expt.gain", self.expt["gain"])

    def readout_frequency(self):
        return QickSweep1D("sweep", float(self.p["start"]), float(self.p["stop"]))

    def play(self, prog) -> None:
        pass

    def xpts(self, prog) -> np.ndarray:
        return np.asarray(prog.get_pulse_param("meas", "freq", as_array=True), float)

    def analyze(self, x, avgi, avgq):
        amps = np.abs(avgi + 1j * avgq)
        signal = amps
        fit = fit_lorentzian(x, signal)
        self.record_fit(signal, fit)
        return {"f_res_mhz": fit["x0"], "f_res_err_mhz": fit["x0_err"], "kappa_mhz": fit["fwhm"]}, {
            "readout.frequency_mhz": round(fit["x0"], 4)
        }
