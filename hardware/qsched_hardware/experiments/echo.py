"""Hahn echo (T2E): pi/2, wait/2, pi, wait/2, pi/2 with a swept total wait; exponential fit."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.experiments.t1 import sweep_times
from qsched_hardware.fits import fit_exp_decay, project_iq


class EchoExperiment(QickExperiment):
    NAME = "echo"
    X_LABEL = "total delay"
    UNITS = "us"
    DEFAULTS = {"start": 0.0, "stop": 80.0, "step": None, "expts": 61}

    def check(self, c: Checker) -> None:
        c.duration("expt.start", self.p["start"], 0.0, 1e4)
        c.duration("expt.stop", self.p["stop"], 0.0, 1e4)

    def declare(self, prog) -> None:
        pi = self.pi_pulse()
        f = float(self.hardware["qubit"]["f_ge_mhz"])
        prog.add_gauss(ch=self.q["gen"], name="pi_env", sigma=pi["sigma_us"], length=pi["length_us"])
        prog.add_pulse(
            ch=self.q["gen"],
            name="pi2",
            style="arb",
            envelope="pi_env",
            freq=f,
            phase=0,
            gain=float(pi["gain"]) / 2,
        )
        prog.add_pulse(
            ch=self.q["gen"],
            name="pi_y",
            style="arb",
            envelope="pi_env",
            freq=f,
            phase=90,
            gain=float(pi["gain"]),
        )

    def play(self, prog) -> None:
        half = QickSweep1D("sweep", float(self.p["start"]) / 2, float(self.p["stop"]) / 2)
        prog.pulse(ch=self.q["gen"], name="pi2", t=0)
        prog.delay_auto(half, tag="wait")
        prog.pulse(ch=self.q["gen"], name="pi_y", t=0)
        prog.delay_auto(half, tag="wait2")
        prog.pulse(ch=self.q["gen"], name="pi2", t=0)

    def xpts(self, prog) -> np.ndarray:
        return 2 * sweep_times(prog, "wait", {**self.p, "start": float(self.p["start"]) / 2})

    def analyze(self, x, avgi, avgq):
        signal = project_iq(avgi, avgq)
        fit = fit_exp_decay(x, signal)
        self.record_fit(signal, fit)
        return {"t2e_us": fit["tau"], "t2e_err_us": fit["tau_err"]}, {}
