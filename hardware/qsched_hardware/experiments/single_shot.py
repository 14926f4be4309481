"""Single-shot readout: shots with the qubit prepared in |g> (no pulse) and in |e> (pi pulse),
kept shot by shot. Gives the rotation angle and threshold that separate the two, the assignment
fidelity, and the excited population each preparation produces."""

from __future__ import annotations

import numpy as np
from qick.asm_v2 import QickSweep1D

from qsched_hardware.board import RunCancelled
from qsched_hardware.experiments.base import Checker, ExperimentResult, QickExperiment, RunContext


class SingleShotExperiment(QickExperiment):
    NAME = "single_shot"
    UNITS = "prepared state (0 = g, 1 = e)"
    DEFAULTS = {"reps": 2000}
    COMMON = {"reps": 2000, "rounds": 1, "relax_delay": None}

    def check(self, c: Checker) -> None:
        if self.p["rounds"] != 1:
            c.add("expt.rounds", "single-shot keeps every shot: rounds must be 1 (raise reps instead)")

    def loops(self):
        return [("prep", 2)]

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
            gain=QickSweep1D("prep", 0.0, float(pi["gain"])),
        )

    def play(self, prog) -> None:
        prog.pulse(ch=self.q["gen"], name="pi", t=0)

    def xpts(self, prog) -> np.ndarray:
        return np.array([0, 1])

    def analyze(self, x, avgi, avgq):  # not used: run() analyses the shots
        return {}, {}

    def run(self, ctx: RunContext) -> ExperimentResult:
        prog = self.make_program()
        try:
            iq = ctx.acquire(prog, rounds=1)
        except RunCancelled as cancelled:
            return ExperimentResult(
                {"xpts": self.xpts(prog)}, partial=True, attrs={"rounds_done": cancelled.rounds_done}
            )
        ro_ch = self.ro["ro"]
        length = prog.ro_chs[ro_ch]["length"]
        offset = float(self.soccfg["readouts"][ro_ch].get("iq_offset", 0.0))
        raw = np.asarray(prog.get_raw()[0], float) / length - offset  # (reps, 2, reads, 2)
        shots = raw[:, :, 0, 0] + 1j * raw[:, :, 0, 1]  # (reps, prep)
        g, e = shots[:, 0], shots[:, 1]
        angle = -float(
            np.angle(np.median(e.real) - np.median(g.real) + 1j * (np.median(e.imag) - np.median(g.imag)))
        )
        rot = np.exp(1j * angle)
        gi, ei = (g * rot).real, (e * rot).real
        threshold = float((np.median(gi) + np.median(ei)) / 2)
        pe_g = float(np.mean(gi > threshold))
        pe_e = float(np.mean(ei > threshold))
        arr = np.asarray(iq[0])[0]
        data = {
            "xpts": self.xpts(prog),
            "avgi": arr[..., 0],
            "avgq": arr[..., 1],
            "i_g": g.real,
            "q_g": g.imag,
            "i_e": e.real,
            "q_e": e.imag,
        }
        summary = {
            "fidelity": pe_e - pe_g,
            "threshold": threshold,
            "angle_rad": angle,
            "pe_given_g": pe_g,
            "pe_given_e": pe_e,
        }
        updates = {"readout.threshold": round(threshold, 4), "readout.angle_rad": round(angle, 5)}
        return ExperimentResult(data, summary, updates)
