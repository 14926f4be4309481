"""The experiment interface (built-ins and lab plug-ins) and the base class the built-ins use.

An experiment class is constructed with `(soccfg, hardware, expt)`: the board's QickConfig,
the hardware config dict and the job's expt_config dict. The executor then calls
`validate()` (at submit time through ValidateExperiment, and again before running) and, if it
returned no violations, `run(ctx)` in a worker thread. See docs/experiments.md."""

from __future__ import annotations

import contextlib
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Protocol

import numpy as np
from qick.asm_v2 import AveragerProgramV2

# The run contract's Violation (one definition): `field` names the parameter, e.g. "expt.gain" or
# "hardware.readout.frequency_mhz". Experiments import it from here.
from qsched_core.execution import Violation
from qsched_hardware.board import Board, Progress, ProgressFn, RoundFn, RunCancelled

MAX_EXPTS = 10_000
MAX_REPS = 1_000_000
MAX_ROUNDS = 10_000


class InvalidExperiment(ValueError):
    def __init__(self, violations: list[Violation]):
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


@dataclass
class ExperimentResult:
    """What a run produced: arrays for the data file, scalar results for the summary, and
    suggested hardware-config updates (dotted keys) from the fit."""

    data: dict[str, Any]
    summary: dict[str, float] = field(default_factory=dict)
    config_updates: dict[str, float] = field(default_factory=dict)
    partial: bool = False  # cancelled: data holds the rounds completed
    attrs: dict[str, Any] = field(default_factory=dict)
    dataset_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # long_name, units


@dataclass(frozen=True)
class SavedRounds:
    """The completed averaging rounds of an earlier, yielded run of the same job (its partial data
    file), for a run that continues from them (`Experiment.can_resume`)."""

    data: dict[str, Any]  # the partial file's datasets (xpts, avgi, avgq)
    rounds_done: int
    task_id: str = ""


class LiveOutput(Protocol):
    """Where a run's live output goes (the executor's; docs/experiments.md). Both calls return at
    once: lines over the caps and partials nobody watches are dropped, never queued."""

    def log(self, line: str) -> None: ...

    def wants_partial(self) -> bool: ...

    def partial(
        self,
        rounds_done: int,
        rounds_total: int,
        data: dict[str, Any],
        dataset_attrs: dict[str, dict[str, Any]] | None = None,
    ) -> None: ...


class RunContext:
    """Handed to `Experiment.run`: the board, progress reporting, the cancel flag, live output
    (`log`, `partial`) and, for a run that continues a yielded one, the rounds that run saved
    (`saved`)."""

    def __init__(
        self,
        board: Board,
        cancel: threading.Event,
        progress: ProgressFn | None = None,
        saved: SavedRounds | None = None,
        output: LiveOutput | None = None,
    ):
        self.board = board
        self.cancel = cancel
        self._progress = progress
        self.saved = saved
        self._output = output

    def acquire(self, prog: Any, rounds: int = 1, on_round: RoundFn | None = None, **kwargs: Any) -> list:
        """Run a compiled qick program (prog.acquire semantics; raises RunCancelled). `on_round`
        gets (rounds done, the average so far) between rounds."""
        return self.board.acquire(prog, rounds, self.cancel, self._progress, on_round, **kwargs)

    def report(self, progress: Progress) -> None:
        if self._progress:
            self._progress(progress)

    def log(self, message: str) -> None:
        """Write log lines (one per line of `message`) that the run's watchers see live
        (`qsched submit --watch`, the web job page) and that stay with the run (`qsched logs`).
        Capped per run and per second; what goes over is dropped and counted, never queued."""
        if self._output is not None:
            for line in str(message).splitlines() or [""]:
                self._output.log(line)

    @property
    def wants_partial(self) -> bool:
        """True when partial data would be sent anywhere (else skip computing it)."""
        return self._output is not None and self._output.wants_partial()

    def partial(
        self,
        rounds_done: int,
        rounds_total: int,
        data: dict[str, Any],
        dataset_attrs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """The data averaged over the rounds done so far (1-D arrays by dataset name, as in the data
        file), for live plots. Call between rounds; only the latest one is kept until sent."""
        if self._output is not None:
            self._output.partial(rounds_done, rounds_total, data, dataset_attrs)


class Experiment(ABC):
    """The plug-in interface."""

    def __init__(self, soccfg: Any, hardware: dict[str, Any], expt: dict[str, Any]):
        self.soccfg = soccfg
        self.hardware = hardware
        self.expt = dict(expt)

    @abstractmethod
    def validate(self) -> list[Violation]:
        """Problems that would stop the run; empty when it can run."""

    @abstractmethod
    def run(self, ctx: RunContext) -> ExperimentResult:
        """Run on the board (blocking; called in a worker thread)."""

    def resolved_config(self) -> dict[str, Any]:
        """The expt config with defaults filled in (recorded in the data file)."""
        return dict(self.expt)

    @property
    def can_resume(self) -> bool:
        """True when `run` continues from `ctx.saved` (a yielded run's completed rounds) and runs
        only the remaining rounds. False: a yielded run of it restarts from the first round."""
        return False


# ---- checks against the board ---------------------------------------------------------------------


class Checker:
    """Collects violations; every check names the parameter it is about."""

    def __init__(self, soccfg: Any):
        self.soccfg = soccfg
        self.violations: list[Violation] = []

    def add(self, field_name: str, description: str) -> None:
        self.violations.append(Violation(field_name, description))

    def number(self, field_name: str, value: Any, lo: float | None = None, hi: float | None = None) -> bool:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
            self.add(field_name, f"must be a number, got {value!r}")
            return False
        if lo is not None and value < lo:
            self.add(field_name, f"{value} is below the minimum {lo}")
            return False
        if hi is not None and value > hi:
            self.add(field_name, f"{value} is above the maximum {hi}")
            return False
        return True

    def integer(self, field_name: str, value: Any, lo: int, hi: int) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                self.add(field_name, f"must be an integer, got {value!r}")
                return False
        return self.number(field_name, value, lo, hi)

    def gen(self, field_name: str, ch: Any) -> bool:
        n = len(self.soccfg["gens"])
        if isinstance(ch, bool) or not isinstance(ch, int) or not 0 <= ch < n:
            self.add(field_name, f"generator {ch!r} does not exist on this board (it has {n}: 0..{n - 1})")
            return False
        return True

    def readout(self, field_name: str, ch: Any) -> bool:
        n = len(self.soccfg["readouts"])
        if isinstance(ch, bool) or not isinstance(ch, int) or not 0 <= ch < n:
            self.add(field_name, f"readout {ch!r} does not exist on this board (it has {n}: 0..{n - 1})")
            return False
        if "tproc_ctrl" not in self.soccfg["readouts"][ch]:
            self.add(field_name, f"readout {ch} is not tProc-configured; the built-in experiments need one")
            return False
        return True

    def freq(self, field_name: str, f: Any, gen: int) -> bool:
        if not self.number(field_name, f):
            return False
        cfg = self.soccfg["gens"][gen]
        if cfg.get("interpolation", 1) != 1:
            hi = float(
                cfg.get("mixer_freq", {}).get("max", cfg["fs"])
                if isinstance(cfg.get("mixer_freq"), dict)
                else cfg["fs"]
            )
        else:
            hi = float(cfg["fs"])
        if not 0 < f < hi:
            self.add(field_name, f"{f} MHz is outside generator {gen}'s range (0, {hi:.2f}) MHz")
            return False
        return True

    def gain(self, field_name: str, g: Any) -> bool:
        if not self.number(field_name, g):
            return False
        if not -1.0 <= g <= 1.0:
            self.add(
                field_name,
                f"gain {g} is outside [-1, 1] (gains are fractions of full scale; divide DAC units by 32766)",
            )
            return False
        return True

    def pulse_length(self, field_name: str, us: Any, gen: int, envelope: bool = False) -> bool:
        if not self.number(field_name, us):
            return False
        cfg = self.soccfg["gens"][gen]
        cycles = us * float(cfg["f_fabric"])
        if cycles < 3:
            self.add(field_name, f"{us} us is shorter than generator {gen}'s minimum (3 fabric cycles)")
            return False
        if cycles >= 2**16:
            self.add(
                field_name, f"{us} us exceeds generator {gen}'s maximum pulse length (2^16 fabric cycles)"
            )
            return False
        if envelope:
            samples = cycles * int(cfg.get("samps_per_clk") or 1)
            maxlen = int(cfg.get("maxlen") or 0)
            if maxlen and samples > maxlen:
                self.add(
                    field_name,
                    f"{us} us needs {samples:.0f} envelope samples; generator {gen} holds {maxlen}",
                )
                return False
        return True

    def duration(self, field_name: str, us: Any, lo: float = 0.0, hi: float = 1e5) -> bool:
        return self.number(field_name, us, lo, hi)


def nyquist_zone(soccfg: Any, gen: int, f: float) -> int:
    fs = float(soccfg["gens"][gen]["fs"])
    return 1 if f < fs / 2 else 2


# ---- the built-ins' base class ----------------------------------------------------------------------


class SweepProgram(AveragerProgramV2):
    """One shot: experiment-specific pulses on the qubit, then the readout pulse and trigger.
    The experiment object (in cfg["experiment"]) supplies the pulses and the sweep."""

    def _initialize(self, cfg):
        expt: QickExperiment = cfg["experiment"]
        ro = expt.ro
        self.declare_gen(ch=ro["gen"], nqz=ro["nqz"])
        if expt.q["gen"] != ro["gen"]:
            self.declare_gen(ch=expt.q["gen"], nqz=expt.q["nqz"])
        self.declare_readout(ch=ro["ro"], length=ro["window_us"])
        for name, count in expt.loops():
            self.add_loop(name, count)
        ro_freq = expt.readout_frequency()
        self.add_readoutconfig(ch=ro["ro"], name="ro_cfg", freq=ro_freq, gen_ch=ro["gen"])
        self.add_pulse(
            ch=ro["gen"],
            name="meas",
            style="const",
            freq=ro_freq,
            phase=0,
            gain=ro["gain"],
            length=ro["length_us"],
        )
        expt.declare(self)

    def _body(self, cfg):
        expt: QickExperiment = cfg["experiment"]
        ro = expt.ro
        self.send_readoutconfig(ch=ro["ro"], name="ro_cfg", t=0)
        expt.play(self)
        self.delay_auto(0.01)
        self.pulse(ch=ro["gen"], name="meas", t=0)
        self.trigger(ros=[ro["ro"]], t=ro["trig_offset_us"])


class QickExperiment(Experiment):
    """A one-dimensional sweep experiment built on SweepProgram.

    Subclasses set NAME and DEFAULTS (expt_config keys -> default or a callable of the
    hardware config), and implement `check`, `declare`, `play`, `xpts` and `analyze`."""

    NAME = ""
    X_LABEL = "swept value"  # what xpts holds ...
    UNITS = ""  # ... and its unit
    SIGNAL_LABEL = "IQ along the |g>-|e> axis"  # what the fit was made to
    DEFAULTS: dict[str, Any] = {}
    COMMON = {"reps": 500, "rounds": 1, "relax_delay": None}

    def __init__(self, soccfg: Any, hardware: dict[str, Any], expt: dict[str, Any]):
        super().__init__(soccfg, hardware, expt)
        channels = hardware["channels"]
        self.q = dict(channels["qubit"])
        self.ro = dict(channels["readout"])
        r = hardware["readout"]
        self.ro.update(
            {
                "freq": r["frequency_mhz"],
                "gain": r["gain"],
                "length_us": r["length_us"],
                "window_us": r["window_us"],
                "trig_offset_us": r["trig_offset_us"],
            }
        )
        self.p = self._resolve()
        for chan, freq in ((self.q, self.qubit_frequency_hint()), (self.ro, self.ro["freq"])):
            if (
                "nqz" not in chan
                and isinstance(chan.get("gen"), int)
                and 0 <= chan["gen"] < len(soccfg["gens"])
            ):
                chan["nqz"] = nyquist_zone(soccfg, chan["gen"], float(freq))

    # -- parameters --
    def _resolve(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, default in {**self.COMMON, **self.DEFAULTS}.items():
            value = self.expt.get(key)
            if value is None:
                value = default(self.hardware) if callable(default) else default
            out[key] = value
        if out.get("relax_delay") is None:
            out["relax_delay"] = self.hardware["readout"]["relax_delay_us"]
        # start/step/expts (seed style) or start/stop/expts
        if "start" in out and self.expt.get("stop") is None and self.expt.get("step") is not None:
            with contextlib.suppress(TypeError):
                out["stop"] = out["start"] + out["step"] * (out["expts"] - 1)
        return out

    def resolved_config(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.expt.items() if k not in self.p}
        return {**extra, **self.p}

    def qubit_frequency_hint(self) -> float:
        return float(self.hardware["qubit"]["f_ge_mhz"])

    def readout_frequency(self) -> Any:
        return self.ro["freq"]

    def pi_pulse(self) -> dict[str, float]:
        return dict(self.hardware["qubit"]["pi_pulse"])

    def loops(self) -> list[tuple[str, int]]:
        return [("sweep", int(self.p["expts"]))]

    # -- validation --
    def validate(self) -> list[Violation]:
        c = Checker(self.soccfg)
        p = self.p
        c.integer("expt.reps", p["reps"], 1, MAX_REPS)
        c.integer("expt.rounds", p["rounds"], 1, MAX_ROUNDS)
        if "expts" in p:
            c.integer("expt.expts", p["expts"], 2, MAX_EXPTS)
        c.duration("expt.relax_delay", p["relax_delay"], 0.0, 1e5)
        ok_q = c.gen("hardware.channels.qubit.gen", self.q.get("gen"))
        ok_ro = c.gen("hardware.channels.readout.gen", self.ro.get("gen"))
        c.readout("hardware.channels.readout.ro", self.ro.get("ro"))
        if ok_q:
            c.freq("hardware.qubit.f_ge_mhz", self.hardware["qubit"]["f_ge_mhz"], self.q["gen"])
            pi = self.pi_pulse()
            c.gain("hardware.qubit.pi_pulse.gain", pi.get("gain"))
            if c.number("hardware.qubit.pi_pulse.sigma_us", pi.get("sigma_us"), 1e-4, 10):
                c.pulse_length("hardware.qubit.pi_pulse.length_us", pi.get("length_us"), self.q["gen"], True)
        if ok_ro:
            c.freq("hardware.readout.frequency_mhz", self.ro["freq"], self.ro["gen"])
            c.gain("hardware.readout.gain", self.ro["gain"])
            c.pulse_length("hardware.readout.length_us", self.ro["length_us"], self.ro["gen"])
            c.duration("hardware.readout.window_us", self.ro["window_us"], 0.01, 100)
            c.duration("hardware.readout.trig_offset_us", self.ro["trig_offset_us"], 0.0, 100)
        if ok_q and ok_ro:
            self.check(c)
        if not c.violations:
            try:
                self.make_program()
            except Exception as exc:  # qick's own checks, e.g. lengths, frequencies, memory sizes
                c.add("program", f"{type(exc).__name__}: {exc}")
        return c.violations

    def check(self, c: Checker) -> None:
        """Experiment-specific checks (sweep ranges, pulse parameters)."""

    # -- program --
    def make_program(self) -> SweepProgram:
        return SweepProgram(
            self.soccfg,
            reps=int(self.p["reps"]),
            final_delay=float(self.p["relax_delay"]),
            cfg={"experiment": self},
        )

    def declare(self, prog: SweepProgram) -> None:
        """Declare the qubit pulses (add_gauss, add_pulse) on prog."""

    @abstractmethod
    def play(self, prog: SweepProgram) -> None:
        """Play the qubit pulses and delays of one shot."""

    @abstractmethod
    def xpts(self, prog: SweepProgram) -> np.ndarray:
        """The swept values as the compiled program has them (after qick's rounding)."""

    @abstractmethod
    def analyze(self, x: np.ndarray, avgi: np.ndarray, avgq: np.ndarray) -> tuple[dict, dict]:
        """(summary, config_updates) from the averaged data."""

    # -- run --
    @property
    def can_resume(self) -> bool:
        # The built-in round loop below; a subclass with its own `run` does not continue.
        return type(self).run is QickExperiment.run

    def run(self, ctx: RunContext) -> ExperimentResult:
        prog = self.make_program()
        x = self.xpts(prog)
        total = int(self.p["rounds"])
        saved = ctx.saved
        before = 0
        if saved is not None and saved.rounds_done > 0 and "avgi" in saved.data:
            if np.shape(saved.data.get("xpts")) != np.shape(x) or not np.allclose(saved.data["xpts"], x):
                raise ValueError("the saved rounds were swept over other points: cannot continue them")
            before = min(total, int(saved.rounds_done))
        rounds: dict[str, Any] = {"rounds_total": total, "rounds_before": before}
        new: tuple[np.ndarray, np.ndarray] | None = None
        done_now = 0
        labels = {"xpts": {"long_name": self.X_LABEL, "units": self.UNITS}}
        ctx.log(
            f"{type(self).__name__}: {len(x)} points x {int(self.p['reps'])} reps x {total} round(s)"
            + (f"; continuing from {before} saved round(s)" if before else "")
        )

        def on_round(done: int, average: list) -> None:
            if not ctx.wants_partial:
                return
            arr = np.asarray(average[0])[0]
            part = _combine(saved, before, (arr[..., 0], arr[..., 1]), done)
            if part is not None:
                ctx.partial(before + done, total, {"xpts": x, "avgi": part[0], "avgq": part[1]}, labels)

        try:
            if total - before > 0:
                iq = ctx.acquire(prog, rounds=total - before, on_round=on_round)
                arr = np.asarray(iq[0])[0]  # first readout, first read of the shot: (expts, 2)
                new, done_now = (arr[..., 0], arr[..., 1]), total - before
        except RunCancelled as cancelled:
            data: dict[str, Any] = {"xpts": x}
            if cancelled.partial is not None and cancelled.rounds_done:
                arr = np.asarray(cancelled.partial[0])[0]
                new, done_now = (arr[..., 0], arr[..., 1]), cancelled.rounds_done
            combined = _combine(saved, before, new, done_now)
            if combined is not None:
                data.update({"avgi": combined[0], "avgq": combined[1]})
            attrs = {"rounds_done": before + done_now, "rounds_this_run": done_now, **rounds}
            return ExperimentResult(data, partial=True, attrs=attrs)
        combined = _combine(saved, before, new, done_now)
        assert combined is not None
        avgi, avgq = combined
        data = {
            "xpts": x,
            "avgi": avgi,
            "avgq": avgq,
            "amps": np.abs(avgi + 1j * avgq),
            "phases": np.angle(avgi + 1j * avgq),
        }
        self._fitted: tuple[np.ndarray, np.ndarray] | None = None
        summary, updates = self.analyze(x, avgi, avgq)
        if summary:
            ctx.log("fit: " + ", ".join(f"{k} = {float(v):.6g}" for k, v in summary.items()))
        if self._fitted is not None:  # keep what was fitted, so a plot can overlay the fit
            data["signal"], data["fit_signal"] = self._fitted
            labels["signal"] = labels["fit_signal"] = {"long_name": self.SIGNAL_LABEL, "units": "ADC units"}
        summary = {k: float(v) for k, v in summary.items()}
        attrs = {"rounds_done": total, "rounds_this_run": done_now, **rounds} if saved is not None else {}
        return ExperimentResult(data, summary, updates, attrs=attrs, dataset_attrs=labels)

    def record_fit(self, signal: np.ndarray, fit: dict[str, Any]) -> None:
        """Called by `analyze`: the data the fit was made to and the fitted curve go into the file."""
        self._fitted = (np.asarray(signal), np.asarray(fit["curve"]))


def _combine(
    saved: SavedRounds | None, before: int, new: tuple[np.ndarray, np.ndarray] | None, done_now: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The average over the saved rounds and this run's, each weighted by its rounds."""
    parts: list[tuple[np.ndarray, np.ndarray, int]] = []
    if saved is not None and before > 0:
        parts.append((np.asarray(saved.data["avgi"]), np.asarray(saved.data["avgq"]), before))
    if new is not None and done_now > 0:
        parts.append((np.asarray(new[0]), np.asarray(new[1]), done_now))
    if not parts:
        return None
    n = sum(w for _, _, w in parts)
    return (sum(i * w for i, _, w in parts) / n, sum(q * w for _, q, w in parts) / n)


def sweep_values(start: float, stop: float, n: int) -> np.ndarray:
    return np.linspace(float(start), float(stop), int(n)) if n > 1 else np.array([float(start)])


CatalogEntry = Callable[..., Experiment]
