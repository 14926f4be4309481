"""The drifting simulated device: parameters move with device time (a sinusoid or a seeded random
walk), time is scaled so hours pass in a test, the fits follow the drift, and the default model
does not drift."""

from __future__ import annotations

import threading

import pytest
import yaml

from qsched_hardware.board import Board
from qsched_hardware.experiments import AmplitudeRabiExperiment, RunContext
from qsched_hardware.sim.device import DEFAULT_DEVICE_MODEL, load_device_model
from qsched_hardware.sim.drift import Drift, ParameterDrift, parse_drift
from qsched_hardware.sim.soc import SimSoc


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drifting_model(tmp_path, drift: dict):
    data = yaml.safe_load(DEFAULT_DEVICE_MODEL.read_text())
    data["drift"] = drift
    path = tmp_path / "drifting.yml"
    path.write_text(yaml.safe_dump(data))
    return load_device_model(path)


def test_the_default_model_does_not_drift():
    soc = SimSoc()
    assert soc.device.drift is None
    truth = load_device_model().qubit
    assert soc.sim_truth() == {"qubit_frequency_mhz": truth.frequency_mhz, "pi_gain": truth.pi_gain}


def test_a_sinusoid_follows_device_time_scaled_from_the_wall_clock(tmp_path):
    model = drifting_model(
        tmp_path,
        {"time_scale": 3600, "pi_gain": {"kind": "sine", "amplitude": 0.05, "period_h": 4}},
    )
    clock = Clock()
    model.drift.clock = clock
    soc = SimSoc(device=model)
    base = model.qubit.pi_gain
    assert soc.sim_truth()["pi_gain"] == pytest.approx(base)
    clock.t = 1.0  # one wall second = one device hour = a quarter period: the crest
    assert soc.sim_truth()["pi_gain"] == pytest.approx(base + 0.05)
    clock.t = 3.0
    assert soc.sim_truth()["pi_gain"] == pytest.approx(base - 0.05)


def test_a_random_walk_is_seeded_bounded_and_independent_of_when_it_is_read():
    spec = {"qubit_frequency_mhz": {"kind": "walk", "step": 0.2, "interval_h": 0.5, "limit": 1.0}}
    a, b = parse_drift(dict(spec), seed=7), parse_drift(dict(spec), seed=7)
    assert isinstance(a, Drift) and a.parameters["qubit_frequency_mhz"] == ParameterDrift(
        "walk", step=0.2, interval_h=0.5, limit=1.0
    )
    late = a.offset("qubit_frequency_mhz", 24.0)
    walk = [b.offset("qubit_frequency_mhz", h / 4) for h in range(97)]
    assert walk[-1] == pytest.approx(late)
    assert max(abs(x) for x in walk) <= 1.0 and len({round(x, 6) for x in walk}) > 20
    assert parse_drift(dict(spec), seed=8).offset("qubit_frequency_mhz", 24.0) != late


def test_bad_drift_sections_are_refused():
    with pytest.raises(ValueError, match="not supported"):
        parse_drift({"t1_us": {"kind": "sine"}}, 0)
    with pytest.raises(ValueError, match="kind"):
        parse_drift({"pi_gain": {"kind": "square"}}, 0)


def test_the_rabi_fit_follows_the_drifted_pi_gain(tmp_path, calibrated_config):
    model = drifting_model(
        tmp_path, {"time_scale": 3600, "pi_gain": {"kind": "sine", "amplitude": 0.06, "period_h": 4}}
    )
    clock = Clock()
    model.drift.clock = clock
    soc = SimSoc(device=model)
    board = Board(soc, soc, "sim", simulated=True)
    soc.sim_truth()  # the drift starts
    clock.t = 1.0
    truth = soc.sim_truth()["pi_gain"]
    assert truth == pytest.approx(model.qubit.pi_gain + 0.06)
    experiment = AmplitudeRabiExperiment(board.soccfg, calibrated_config, {})
    result = experiment.run(RunContext(board, threading.Event()))
    assert result.summary["pi_gain"] == pytest.approx(truth, rel=0.02)
