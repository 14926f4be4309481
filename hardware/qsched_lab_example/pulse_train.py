"""PulseTrainExperiment: N repeated pi/2 pulses (swept N); an amplitude-error amplifier.

A correct pi/2 pulse gives a population that alternates with period 4 in N; a gain error
makes the pattern drift, and the fit of P(e) versus N gives the error per pulse."""

from __future__ import annotations

import numpy as np

from qsched_hardware.experiments.base import Checker, ExperimentResult, QickExperiment, RunContext
from qsched_hardware.fits import project_iq


class PulseTrainExperiment(QickExperiment):
    NAME = "pulse_train"
    UNITS = "number of pi/2 pulses"
    DEFAULTS = {"max_pulses": 16, "reps": 300}

    def check(self, c: Checker) -> None:
        c.integer("expt.max_pulses", self.p["max_pulses"], 1, 200)

    def loops(self):
        return []  # one program per pulse count: a Python loop over programs

    def declare(self, prog) -> None:
        pi = self.pi_pulse()
        prog.add_gauss(ch=self.q["gen"], name="pi_env", sigma=pi["sigma_us"], length=pi["length_us"])
        prog.add_pulse(
            ch=self.q["gen"],
            name="pi2",
            style="arb",
            envelope="pi_env",
            freq=float(self.hardware["qubit"]["f_ge_mhz"]),
            phase=0,
            gain=float(pi["gain"]) / 2,
        )

    def play(self, prog) -> None:
        for _ in range(self._n):
            prog.pulse(ch=self.q["gen"], name="pi2", t=0)
            prog.delay_auto(0.0)

    def xpts(self, prog) -> np.ndarray:
        return np.arange(0, int(self.p["max_pulses"]) + 1)

    def make_program(self, n: int = 1):
        self._n = n
        return super().make_program()

    def analyze(self, x, avgi, avgq):
        return {}, {}

    def run(self, ctx: RunContext) -> ExperimentResult:
        x = np.arange(0, int(self.p["max_pulses"]) + 1)
        points = []
        for n in x:
            iq = ctx.acquire(self.make_program(int(n)), rounds=int(self.p["rounds"]))
            points.append(np.asarray(iq[0])[0])
        arr = np.array(points)
        avgi, avgq = arr[..., 0], arr[..., 1]
        y = project_iq(avgi, avgq)
        return ExperimentResult(
            {"xpts": x, "avgi": avgi, "avgq": avgq, "signal": y},
            {"contrast": float(y.max() - y.min())},
        )
