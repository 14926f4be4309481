"""T1: a pi pulse, a swept wait, then readout; an exponential fit gives T1."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.fits import fit_exp_decay, project_iq


class T1Experiment(QickExperiment):
    NAME = "t1"
    X_LABEL = "delay after the pi pulse"
    UNITS = "us"
    DEFAULTS = {"start": 0.0, "stop": 150.0, "step": None, "expts": 61}

    def check(self, c: Checker) -> None:
        c.duration("expt.start", self.p["start"], 0.0, 1e4)
        c.duration("expt.stop", self.p["stop"], 0.0, 1e4)

    def declare(self, prog) -> None:
        pi = self.pi_pulse()
        prog.add_gauss(ch=self.q["gen"], name="pi_env", sigma=pi["sigma_us"], length=pi["length_us"])
        prog.add_pulse(
            ch=self.q["gen"],
            name="pi",
            style="arb",
            envelope="pi_env",
            freq=float(self.hardware["qubit"]["f_ge_mhz"]),
            phase=0,
            gain=float(pi["gain"]),
        )

    def play(self, prog) -> None:
        prog.pulse(ch=self.q["gen"], name="pi", t=0)
        prog.delay_auto(QickSweep1D("sweep", float(self.p["start"]), float(self.p["stop"])), tag="wait")

    def xpts(self, prog) -> np.ndarray:
        return sweep_times(prog, "wait", self.p)

    def analyze(self, x, avgi, avgq):
        signal = project_iq(avgi, avgq)
        fit = fit_exp_decay(x, signal)
        self.record_fit(signal, fit)
        return {"t1_us": fit["tau"], "t1_err_us": fit["tau_err"]}, {}


def sweep_times(prog, tag: str, p: dict) -> np.ndarray:
    """The swept delay values; qick reports the delay including the auto part, so subtract the
    first point's excess to get the requested wait."""
    try:
        values = np.asarray(prog.get_time_param(tag, "t", as_array=True), float)
        return values - values[0] + float(p["start"])
    except Exception:
        return np.linspace(float(p["start"]), float(p["stop"]), int(p["expts"]))
