"""Ramsey (T2*): two pi/2 pulses separated by a swept wait, the second with its phase advanced
by 360 * ramsey_freq * wait (artificial detuning). The fringe frequency gives the qubit
frequency correction, its decay T2*."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.experiments.base import Checker, QickExperiment
from qsched_hardware.experiments.t1 import sweep_times
from qsched_hardware.fits import fit_decaying_cos, project_iq


class RamseyExperiment(QickExperiment):
    NAME = "ramsey"
    X_LABEL = "delay between pi/2 pulses"
    UNITS = "us"
    DEFAULTS = {"start": 0.0, "stop": 40.0, "step": None, "expts": 201, "ramsey_freq": 0.25}

    def check(self, c: Checker) -> None:
        c.duration("expt.start", self.p["start"], 0.0, 1e4)
        c.duration("expt.stop", self.p["stop"], 0.0, 1e4)
        c.number("expt.ramsey_freq", self.p["ramsey_freq"], -50, 50)

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
        stop_phase = 360.0 * float(self.p["ramsey_freq"]) * (float(self.p["stop"]) - float(self.p["start"]))
        prog.add_pulse(
            ch=self.q["gen"],
            name="pi2_b",
            style="arb",
            envelope="pi_env",
            freq=f,
            phase=QickSweep1D("sweep", 0.0, stop_phase),
            gain=float(pi["gain"]) / 2,
        )

    def play(self, prog) -> None:
        prog.pulse(ch=self.q["gen"], name="pi2", t=0)
        prog.delay_auto(QickSweep1D("sweep", float(self.p["start"]), float(self.p["stop"])), tag="wait")
        prog.pulse(ch=self.q["gen"], name="pi2_b", t=0)

    def xpts(self, prog) -> np.ndarray:
        return sweep_times(prog, "wait", self.p)

    def analyze(self, x, avgi, avgq):
        signal = project_iq(avgi, avgq)
        fit = fit_decaying_cos(x, signal)
        self.record_fit(signal, fit)
        f_set = float(self.p["ramsey_freq"])
        f_drive = float(self.hardware["qubit"]["f_ge_mhz"])
        # fringes at |ramsey_freq + (f_drive - f_qubit)|: the qubit sits at drive + ramsey - fringe
        detuning = f_set - fit["freq"] if f_set >= 0 else f_set + fit["freq"]
        f_ge = f_drive + detuning
        summary = {
            "t2r_us": fit["tau"],
            "t2r_err_us": fit["tau_err"],
            "fringe_mhz": fit["freq"],
            "f_ge_mhz": f_ge,
        }
        return summary, {"qubit.f_ge_mhz": round(f_ge, 4)}
