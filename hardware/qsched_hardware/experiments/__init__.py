"""Built-in experiments: real qick tProc v2 programs (AveragerProgramV2) compiled against the
board's QickConfig. `CATALOG` maps every accepted class name (including the seed's names) to
its class; `experiment_module` may be this package or the defining module."""

from __future__ import annotations

from qsched_hardware.experiments.amplitude_rabi import AmplitudeRabiExperiment
from qsched_hardware.experiments.base import (
    Experiment,
    ExperimentResult,
    InvalidExperiment,
    QickExperiment,
    RunContext,
    SavedRounds,
    Violation,
)
from qsched_hardware.experiments.echo import EchoExperiment
from qsched_hardware.experiments.length_rabi import LengthRabiExperiment
from qsched_hardware.experiments.noop import NoOpExperiment
from qsched_hardware.experiments.qubit_spectroscopy import QubitSpectroscopyExperiment
from qsched_hardware.experiments.ramsey import RamseyExperiment
from qsched_hardware.experiments.resonator_spectroscopy import ResonatorSpectroscopyExperiment
from qsched_hardware.experiments.single_shot import SingleShotExperiment
from qsched_hardware.experiments.t1 import T1Experiment

BUILTIN_PACKAGE = __name__

CATALOG: dict[str, type[Experiment]] = {
    "ResonatorSpectroscopyExperiment": ResonatorSpectroscopyExperiment,
    "QubitSpectroscopyExperiment": QubitSpectroscopyExperiment,
    "PulseProbeSpectroscopyExperiment": QubitSpectroscopyExperiment,
    "AmplitudeRabiExperiment": AmplitudeRabiExperiment,
    "LengthRabiExperiment": LengthRabiExperiment,
    "T1Experiment": T1Experiment,
    "RamseyExperiment": RamseyExperiment,
    "T2RamseyExperiment": RamseyExperiment,
    "EchoExperiment": EchoExperiment,
    "T2EchoExperiment": EchoExperiment,
    "SingleShotExperiment": SingleShotExperiment,
    "HistogramExperiment": SingleShotExperiment,
    "NoOpExperiment": NoOpExperiment,
}

__all__ = [
    "BUILTIN_PACKAGE",
    "CATALOG",
    "AmplitudeRabiExperiment",
    "EchoExperiment",
    "Experiment",
    "ExperimentResult",
    "InvalidExperiment",
    "LengthRabiExperiment",
    "NoOpExperiment",
    "QickExperiment",
    "QubitSpectroscopyExperiment",
    "RamseyExperiment",
    "ResonatorSpectroscopyExperiment",
    "RunContext",
    "SavedRounds",
    "SingleShotExperiment",
    "T1Experiment",
    "Violation",
]
