"""On the simulated board, every built-in experiment's fit recovers the device model's truth,
and a calibration loop converges as it would on a fridge."""

from __future__ import annotations

import copy
import threading

import pytest

from qsched_hardware.experiments import (
    AmplitudeRabiExperiment,
    EchoExperiment,
    LengthRabiExperiment,
    QubitSpectroscopyExperiment,
    RamseyExperiment,
    ResonatorSpectroscopyExperiment,
    RunContext,
    SingleShotExperiment,
    T1Experiment,
)
from qsched_hardware.hwconfig import set_path
from qsched_hardware.sim.device import load_device_model

TRUTH = load_device_model()


def run(board, cls, hardware, expt=None):
    experiment = cls(board.soccfg, hardware, expt or {})
    assert experiment.validate() == []
    result = experiment.run(RunContext(board, threading.Event()))
    assert not result.partial
    return result


def test_resonator_spectroscopy_finds_the_resonator(board, shipped_config):
    assert abs(shipped_config["readout"]["frequency_mhz"] - TRUTH.resonator.frequency_mhz) > 0.2  # starts off
    r = run(board, ResonatorSpectroscopyExperiment, shipped_config)
    assert r.summary["f_res_mhz"] == pytest.approx(TRUTH.resonator.frequency_mhz, abs=0.1)
    assert r.config_updates["readout.frequency_mhz"] == pytest.approx(r.summary["f_res_mhz"], abs=1e-3)


def test_qubit_spectroscopy_finds_the_qubit(board, shipped_config):
    cfg = set_path(shipped_config, "readout.frequency_mhz", TRUTH.resonator.frequency_mhz)
    assert abs(cfg["qubit"]["f_ge_mhz"] - TRUTH.qubit.frequency_mhz) > 0.2
    r = run(board, QubitSpectroscopyExperiment, cfg)
    assert r.summary["f_ge_mhz"] == pytest.approx(TRUTH.qubit.frequency_mhz, abs=0.1)


def test_amplitude_rabi_recovers_the_pi_gain(board, calibrated_config):
    r = run(board, AmplitudeRabiExperiment, calibrated_config)
    assert r.summary["pi_gain"] == pytest.approx(TRUTH.qubit.pi_gain, rel=0.02)
    assert r.data["avgi"].shape == (101,)


def test_amplitude_rabi_simulates_fast(board, calibrated_config):
    import time

    experiment = AmplitudeRabiExperiment(board.soccfg, calibrated_config, {"expts": 101, "reps": 1000})
    prog = experiment.make_program()
    board.soc.sim_load_listing(prog.dump_prog())
    start = time.perf_counter()
    prog.acquire(board.soc, rounds=1, progress=False)
    assert time.perf_counter() - start < 1.0  # 101 points x 1000 reps


def test_length_rabi_recovers_the_rabi_frequency(board, calibrated_config):
    r = run(board, LengthRabiExperiment, calibrated_config, {"gain": 0.1})
    assert r.summary["rabi_mhz"] == pytest.approx(TRUTH.qubit.rabi_mhz_full_gain() * 0.1, rel=0.02)


def test_t1(board, calibrated_config):
    r = run(board, T1Experiment, set_path(calibrated_config, "qubit.pi_pulse.gain", TRUTH.qubit.pi_gain))
    assert r.summary["t1_us"] == pytest.approx(TRUTH.qubit.t1_us, rel=0.10)


def test_ramsey_gives_t2_and_corrects_the_qubit_frequency(board, calibrated_config):
    cfg = set_path(calibrated_config, "qubit.pi_pulse.gain", TRUTH.qubit.pi_gain)
    cfg = set_path(cfg, "qubit.f_ge_mhz", TRUTH.qubit.frequency_mhz - 0.12)  # slightly detuned drive
    r = run(board, RamseyExperiment, cfg)
    assert r.summary["t2r_us"] == pytest.approx(TRUTH.qubit.t2_us, rel=0.10)
    assert r.summary["f_ge_mhz"] == pytest.approx(TRUTH.qubit.frequency_mhz, abs=0.02)


def test_echo_gives_t2(board, calibrated_config):
    r = run(board, EchoExperiment, set_path(calibrated_config, "qubit.pi_pulse.gain", TRUTH.qubit.pi_gain))
    assert r.summary["t2e_us"] == pytest.approx(TRUTH.qubit.t2_us, rel=0.10)


def test_single_shot_separates_g_and_e(board, calibrated_config):
    r = run(
        board, SingleShotExperiment, set_path(calibrated_config, "qubit.pi_pulse.gain", TRUTH.qubit.pi_gain)
    )
    assert r.summary["fidelity"] > 0.9
    assert r.data["i_g"].shape == (2000,) and r.data["i_e"].shape == (2000,)


def test_calibration_loop_converges(board, calibrated_config):
    """Wrong pi gain -> amplitude Rabi -> write the fit into the config -> the pi pulse works."""
    cfg = copy.deepcopy(calibrated_config)
    cfg["qubit"]["pi_pulse"]["gain"] = 0.30  # about 30 % low
    before = run(board, SingleShotExperiment, cfg).summary["pe_given_e"]
    assert before < 0.9
    rabi = run(board, AmplitudeRabiExperiment, cfg)
    for key, value in rabi.config_updates.items():
        cfg = set_path(cfg, key, value)
    assert cfg["qubit"]["pi_pulse"]["gain"] == pytest.approx(TRUTH.qubit.pi_gain, rel=0.02)
    after = run(board, SingleShotExperiment, cfg).summary["pe_given_e"]
    assert after > 0.95


def test_results_follow_the_pulse_parameters_not_a_canned_curve(board, calibrated_config):
    """Doubling the Rabi pulse length halves the pi gain: the board plays what the program says."""
    cfg = set_path(calibrated_config, "qubit.pi_pulse.length_us", 0.2)
    cfg = set_path(cfg, "qubit.pi_pulse.sigma_us", 0.05)
    r = run(board, AmplitudeRabiExperiment, cfg, {"stop": 0.6})
    assert r.summary["pi_gain"] == pytest.approx(TRUTH.qubit.pi_gain / 2, rel=0.03)
