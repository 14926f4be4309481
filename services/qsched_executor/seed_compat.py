"""Seed compatibility: run lab jobs written for the seed job server (SchusterLab multimode_expts,
`experiments.single_qubit.*` modules, DAC-unit gains) on qsched's built-in experiments.

It applies only when a job names one of the seed's experiment modules (the table below), and
only if no allow-listed plug-in package claims that module name (a lab that ships its own
`experiments` package keeps it). Then:

1. the seed (module, class) pair is mapped to a built-in class (`SEED_EXPERIMENTS`);
2. the expt_config is translated key by key (`translate`): gains given in DAC units are divided
   by the full scale (`maxv`) of the generator they drive, read from the board's QickConfig;
   single-qubit selectors (`qubits: [0]`) and flags that ask for what the built-in does anyway
   are dropped; anything the built-in cannot do is refused with a Violation naming the key;
3. what was done is recorded (`SeedTranslation.provenance()`), and the executor writes it to the
   run's HDF5 file as the root attribute `seed_compat`.

Keys not in the rules pass through unchanged (times in us, frequencies in MHz and counts mean the
same in the seed and in qsched). docs/sdk.md ("Seed experiments") documents the table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from qsched_executor.errors import InvalidRequest
from qsched_executor.plugins import in_package
from qsched_hardware.experiments import BUILTIN_PACKAGE, CATALOG, Experiment, Violation

# The packages the seed's experiments live in (the repository root is on the seed worker's path,
# so notebooks write `experiments.single_qubit.t1`; some write the repository name first).
SEED_PACKAGES = ("experiments", "multimode_expts.experiments")

# seed module (relative to a seed package) -> {seed class: built-in class}
SEED_EXPERIMENTS: dict[str, dict[str, str]] = {
    "single_qubit.resonator_spectroscopy": {
        "ResonatorSpectroscopyExperiment": "ResonatorSpectroscopyExperiment"
    },
    "single_qubit.pulse_probe_spectroscopy": {
        "PulseProbeSpectroscopyExperiment": "QubitSpectroscopyExperiment"
    },
    "single_qubit.amplitude_rabi": {"AmplitudeRabiExperiment": "AmplitudeRabiExperiment"},
    "single_qubit.length_rabi": {"LengthRabiExperiment": "LengthRabiExperiment"},
    "single_qubit.t1": {"T1Experiment": "T1Experiment"},
    "single_qubit.t2_ramsey": {"T2RamseyExperiment": "RamseyExperiment"},
    "single_qubit.t2_echo": {"T2EchoExperiment": "EchoExperiment"},
    "single_qubit.single_shot": {"HistogramExperiment": "SingleShotExperiment"},
}

# built-in class -> {expt key given in DAC units: the channel whose generator it drives}
DAC_GAINS: dict[str, dict[str, str]] = {
    "AmplitudeRabiExperiment": {"start": "qubit", "step": "qubit", "stop": "qubit"},
    "LengthRabiExperiment": {"gain": "qubit"},
    "QubitSpectroscopyExperiment": {"gain": "qubit"},
    "ResonatorSpectroscopyExperiment": {"gain": "readout"},
}

# Flags the seed's experiments take that ask for something the built-ins do not do: accepted
# (and dropped) when false, refused when true. Per built-in class; "*" applies to all.
UNSUPPORTED_FLAGS: dict[str, dict[str, str]] = {
    "*": {
        "checkEF": "the built-ins drive the g-e transition only",
        "checkZZ": "the built-ins drive one qubit; there is no ZZ check",
        "check_f": "the built-ins prepare |g> and |e> only",
    },
    "ResonatorSpectroscopyExperiment": {
        "pi_pulse": "resonator spectroscopy runs with the qubit in |g> (no pi pulse first)",
    },
    "EchoExperiment": {
        "cp": "the echo's refocusing pulse is a pi pulse about y (CPMG); a CP echo (about x) is not offered",
    },
}

# Keys that are dropped because the built-in always does what they ask for.
ALWAYS: dict[str, dict[str, str]] = {
    "EchoExperiment": {"cpmg": "the echo's refocusing pulse is about y (CPMG)"},
    "SingleShotExperiment": {"check_e": "single shot always prepares both |g> and |e>"},
}


class SeedConfigError(InvalidRequest):
    """An expt_config key of a seed job that cannot be translated; `violations` name the keys."""

    def __init__(self, violations: list[Violation]):
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(
            "SEED_CONFIG_UNTRANSLATABLE",
            f"the seed experiment's config cannot be translated: {text}",
            field=violations[0].field,
        )
        self.violations = violations


@dataclass
class SeedTranslation:
    """One seed job's mapping: the built-in it runs as and what was done to its config."""

    seed_module: str
    seed_class: str
    builtin_class: str
    seed_config: dict[str, Any] = field(default_factory=dict)
    translated: list[dict[str, Any]] = field(default_factory=list)  # key, seed_value, value, rule
    dropped: list[dict[str, Any]] = field(default_factory=list)  # key, seed_value, rule

    @property
    def cls(self) -> type[Experiment]:
        return CATALOG[self.builtin_class]

    def provenance(self) -> dict[str, Any]:
        return {
            "seed_experiment_module": self.seed_module,
            "seed_experiment_class": self.seed_class,
            "experiment": f"{BUILTIN_PACKAGE}.{self.builtin_class}",
            "seed_expt_config": self.seed_config,
            "translated": self.translated,
            "dropped": self.dropped,
            "doc": "docs/sdk.md#seed-experiments",
        }

    def build(self, soccfg: Any, hardware: dict[str, Any], expt: dict[str, Any]) -> Experiment:
        """The built-in experiment for this seed job, its config translated (SeedConfigError names
        what cannot be); the experiment carries this translation as `seed_compat`."""
        translated = self.translate(expt, soccfg, hardware)
        try:
            experiment = self.cls(soccfg, hardware, translated)
        except Exception as exc:
            raise InvalidRequest(
                "EXPT_CONFIG_INVALID", f"{self.seed_class}: {type(exc).__name__}: {exc}"
            ) from exc
        experiment.seed_compat = self  # type: ignore[attr-defined]  # read by provenance()
        return experiment

    # -- the config ---------------------------------------------------------------------------------
    def translate(self, expt: dict[str, Any], soccfg: Any, hardware: dict[str, Any]) -> dict[str, Any]:
        """The expt_config in qsched's units; raises SeedConfigError naming every key it cannot
        translate. Records what it did on self."""
        self.seed_config = dict(expt)
        self.translated, self.dropped = [], []
        out = dict(expt)
        problems: list[Violation] = []
        cls = self.builtin_class

        # single-qubit selectors
        for key in ("qubits", "qubit"):
            if key not in out:
                continue
            value = out[key]
            ok = value == 0 or (isinstance(value, (list, tuple)) and list(value) == [0])
            if isinstance(value, bool) or not ok:
                problems.append(
                    Violation(f"expt.{key}", f"{value!r}: this board has one qubit (index 0); use {key}=[0]")
                )
                continue
            self._drop(out, key, "the board has one qubit (index 0)")

        flags = {**UNSUPPORTED_FLAGS["*"], **UNSUPPORTED_FLAGS.get(cls, {})}
        for key, why in flags.items():
            if key not in out:
                continue
            if out[key]:
                problems.append(Violation(f"expt.{key}", f"{out[key]!r} is not supported: {why}"))
            else:
                self._drop(out, key, f"false: {why}")
        for key, why in ALWAYS.get(cls, {}).items():
            if key in out:
                self._drop(out, key, why)
        if cls == "EchoExperiment" and "num_pi" in out:
            if out["num_pi"] == 1 and not isinstance(out["num_pi"], bool):
                self._drop(out, "num_pi", "the echo has one refocusing pulse")
            else:
                problems.append(
                    Violation("expt.num_pi", f"{out['num_pi']!r}: the built-in echo has exactly one pi pulse")
                )

        problems += self._gains(out, soccfg, hardware)
        if problems:
            raise SeedConfigError(problems)
        return out

    def _drop(self, out: dict[str, Any], key: str, rule: str) -> None:
        self.dropped.append({"key": f"expt.{key}", "seed_value": out.pop(key), "rule": rule})

    def _gains(self, out: dict[str, Any], soccfg: Any, hardware: dict[str, Any]) -> list[Violation]:
        keys = [k for k in DAC_GAINS.get(self.builtin_class, {}) if out.get(k) is not None]
        problems: list[Violation] = []
        full: dict[str, tuple[int, float]] = {}  # channel -> (generator, maxv)
        for key in keys:
            channel = DAC_GAINS[self.builtin_class][key]
            if channel not in full:
                gen = (hardware.get("channels") or {}).get(channel, {}).get("gen")
                gens = soccfg["gens"]
                if isinstance(gen, bool) or not isinstance(gen, int) or not 0 <= gen < len(gens):
                    problems.append(
                        Violation(
                            f"expt.{key}",
                            f"DAC units cannot be converted: hardware.channels.{channel}.gen = {gen!r} "
                            f"is not a generator of this board (it has {len(gens)})",
                        )
                    )
                    continue
                full[channel] = (gen, float(gens[gen]["maxv"]))
            gen, maxv = full[channel]
            value = out[key]
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
                problems.append(
                    Violation(f"expt.{key}", f"a gain in DAC units must be a number, got {value!r}")
                )
                continue
            if key != "step" and abs(value) > maxv:
                problems.append(
                    Violation(
                        f"expt.{key}",
                        f"{value} DAC units is beyond generator {gen}'s full scale ({maxv:g})",
                    )
                )
                continue
        if problems:
            return problems
        sweep_end = self._seed_sweep_end(out)
        if sweep_end is not None:
            _gen, maxv = full["qubit"]
            if abs(sweep_end) > maxv:
                return [
                    Violation(
                        "expt.step",
                        f"the sweep ends at start + step*(expts-1) = {sweep_end:g} DAC units, beyond "
                        f"the full scale ({maxv:g})",
                    )
                ]
        for key in keys:
            channel = DAC_GAINS[self.builtin_class][key]
            gen, maxv = full[channel]
            seed_value = out[key]
            out[key] = seed_value / maxv
            self.translated.append(
                {
                    "key": f"expt.{key}",
                    "seed_value": seed_value,
                    "value": out[key],
                    "rule": f"DAC units / {maxv:g} (maxv of generator {gen}, the {channel} channel)",
                }
            )
        return []

    def _seed_sweep_end(self, out: dict[str, Any]) -> float | None:
        """The seed's start/step/expts gain sweep end in DAC units (None if not such a sweep)."""
        if self.builtin_class != "AmplitudeRabiExperiment" or out.get("stop") is not None:
            return None
        start, step, expts = out.get("start", 0), out.get("step"), out.get("expts")
        if step is None or isinstance(expts, bool) or not isinstance(expts, int):
            return None
        return float(start) + float(step) * (expts - 1)


def seed_module_name(module: str) -> str | None:
    """The module relative to its seed package, or None if it is not in one."""
    module = (module or "").strip()
    for package in SEED_PACKAGES:
        if module.startswith(package + "."):
            return module[len(package) + 1 :]
    return None


def find_seed_experiment(module: str, class_name: str, allowed: tuple[str, ...]) -> SeedTranslation | None:
    """A SeedTranslation when the job names a seed experiment module; None otherwise (also when an
    allow-listed plug-in package owns the name). A seed module or class with no built-in
    equivalent is refused (INVALID_ARGUMENT) naming it."""
    relative = seed_module_name(module)
    if relative is None:
        return None
    module = module.strip()
    if any(in_package(module, package) for package in allowed):
        return None
    classes = SEED_EXPERIMENTS.get(relative)
    if classes is None:
        known = ", ".join(f"experiments.{m}" for m in SEED_EXPERIMENTS)
        raise InvalidRequest(
            "SEED_EXPERIMENT_UNSUPPORTED",
            f"{module!r} is a seed job-server experiment module with no qsched built-in equivalent "
            f"(seed modules qsched runs: {known}; or use {BUILTIN_PACKAGE} or an allow-listed plug-in)",
            experiment_module=module,
        )
    builtin = classes.get(class_name)
    if builtin is None:
        raise InvalidRequest(
            "EXPERIMENT_NOT_FOUND",
            f"seed module {module} has no experiment class {class_name!r} that qsched translates "
            f"(it has: {', '.join(classes)})",
            experiment_class=class_name,
        )
    return SeedTranslation(module, class_name, builtin)


def provenance(experiment: Experiment) -> dict[str, Any]:
    """Root attributes for the run's data file: `seed_compat` when the job was a seed job."""
    translation = getattr(experiment, "seed_compat", None)
    return {"seed_compat": translation.provenance()} if translation is not None else {}


__all__ = [
    "DAC_GAINS",
    "SEED_EXPERIMENTS",
    "SEED_PACKAGES",
    "SeedConfigError",
    "SeedTranslation",
    "find_seed_experiment",
    "provenance",
    "seed_module_name",
]
