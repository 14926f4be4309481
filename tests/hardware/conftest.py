"""Fixtures for the hardware tests: the simulated board and hardware configs."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

HARDWARE_DIR = Path(__file__).resolve().parents[2] / "hardware"
if str(HARDWARE_DIR) not in sys.path:  # the example plug-in package (not installed until `make install`)
    sys.path.insert(0, str(HARDWARE_DIR))


@pytest.fixture
def board():
    from qsched_hardware.board import open_board

    return open_board("sim")


@pytest.fixture
def shipped_config():
    """The shipped hardware config: deliberately a little off the simulated device."""
    from qsched_hardware.hwconfig import load_hardware_config

    return load_hardware_config()[0]


@pytest.fixture
def calibrated_config(shipped_config):
    """The shipped config with the frequencies a spectroscopy would find (but the shipped pi gain)."""
    from qsched_hardware.sim.device import load_device_model

    truth = load_device_model()
    cfg = copy.deepcopy(shipped_config)
    cfg["qubit"]["f_ge_mhz"] = truth.qubit.frequency_mhz
    cfg["readout"]["frequency_mhz"] = truth.resonator.frequency_mhz
    return cfg
