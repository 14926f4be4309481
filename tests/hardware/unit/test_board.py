"""The simulated SoC, the tProc interpreter, Pyro4 access and data files."""

from __future__ import annotations

import secrets
import threading

import h5py
import numpy as np
import pytest

from qsched_hardware.board import Board, open_board
from qsched_hardware.datafile import TMP_SUFFIX, run_file_name, write_run_file
from qsched_hardware.experiments import AmplitudeRabiExperiment, RunContext
from qsched_hardware.sim.soc import SimulationError


def test_acquire_follows_qicks_call_order_and_shapes(board, calibrated_config):
    calls = []
    soc = board.soc

    class Recording:
        def __getattr__(self, name):
            attr = getattr(soc, name)
            if callable(attr):

                def wrapper(*a, **k):
                    calls.append(name)
                    return attr(*a, **k)

                return wrapper
            return attr

    prog = AmplitudeRabiExperiment(board.soccfg, calibrated_config, {"expts": 21, "reps": 100}).make_program()
    soc.sim_load_listing(prog.dump_prog())
    data = prog.acquire(Recording(), rounds=2, progress=False)
    assert data[0].shape == (1, 21, 2)
    assert prog.get_raw()[0].shape == (100, 21, 1, 2)
    for name in ("load_envelope", "load_bin_program", "config_avg", "clear_tproc_counter", "start_readout"):
        assert name in calls
    assert calls.index("load_bin_program") < calls.index("start_readout") < calls.index("poll_data")
    assert calls.count("start_readout") == 2 and calls.count("cleanup_round") == 2


def test_the_board_refuses_a_listing_that_is_not_the_loaded_binary(board, calibrated_config):
    a = AmplitudeRabiExperiment(board.soccfg, calibrated_config, {"expts": 11}).make_program()
    b = AmplitudeRabiExperiment(board.soccfg, calibrated_config, {"expts": 12}).make_program()
    board.soc.sim_load_listing(b.dump_prog())
    with pytest.raises(SimulationError, match="does not match"):
        a.acquire(board.soc, progress=False)


def test_the_board_needs_the_listing(calibrated_config):
    fresh = open_board("sim")
    prog = AmplitudeRabiExperiment(fresh.soccfg, calibrated_config, {"expts": 11}).make_program()
    with pytest.raises(SimulationError, match="listing"):
        prog.acquire(fresh.soc, progress=False)


def test_same_seed_same_data(calibrated_config):
    def once():
        b = open_board("sim")
        r = AmplitudeRabiExperiment(b.soccfg, calibrated_config, {"expts": 11, "reps": 20}).run(
            RunContext(b, threading.Event())
        )
        return r.data["avgi"]

    assert np.array_equal(once(), once())


def test_pyro_loopback_runs_the_same_code_path(calibrated_config):
    from qsched_hardware.pyro import SimServer

    key = secrets.token_hex(16)
    server = SimServer(hmac_key=key)
    try:
        board = open_board(server.board_uri, hmac_key=key)
        assert isinstance(board, Board) and board.simulated and board.model == "ZCU216"
        assert board.board_id.startswith("pyro-127.0.0.1-")
        result = AmplitudeRabiExperiment(board.soccfg, calibrated_config, {"expts": 21, "reps": 100}).run(
            RunContext(board, threading.Event())
        )
        assert result.summary["pi_gain"] == pytest.approx(0.437, rel=0.05)
        # without the key the name server does not answer
        with pytest.raises(Exception):  # noqa: B017 - Pyro4 raises CommunicationError subclasses
            open_board(server.board_uri, hmac_key="wrong-key")
    finally:
        server.close()


def test_data_files_are_written_atomically_under_a_name_per_run(tmp_path):
    from datetime import datetime

    when = datetime(2026, 1, 13, 12, 0)
    name = run_file_name("JOB-20260113-00001", "t-1", when)
    assert name == "2026-01-13/JOB-20260113-00001-t-1.h5"
    first = tmp_path / name
    attrs = {"job_id": "JOB-20260113-00001", "summary": {"a": 1}, "partial": False, "n": 3, "none": None}
    sha, size = write_run_file(first, {"xpts": np.arange(3)}, attrs, {"xpts": {"units": "us"}})
    assert size == first.stat().st_size and len(sha) == 64
    assert not list(tmp_path.rglob(f"*{TMP_SUFFIX}"))
    second = tmp_path / run_file_name("JOB-20260113-00001", "t-2", when)

    class Boom(Exception):
        pass

    class Bad:
        def __array__(self, *a, **k):
            raise Boom()

    with pytest.raises(Boom):
        write_run_file(second, {"xpts": Bad()}, {})
    assert not second.exists() and not list(tmp_path.rglob(f"*{TMP_SUFFIX}"))
    with h5py.File(first, "r") as f:  # written with the low-level API, read as h5py always reads
        assert list(f["xpts"][()]) == [0, 1, 2] and f.attrs["format"] == "qsched-run/1"
        assert f.attrs["job_id"] == "JOB-20260113-00001" and f.attrs["summary"] == '{"a": 1}'
        assert f.attrs["partial"] == False and f.attrs["n"] == 3 and f.attrs["none"] == ""  # noqa: E712
        assert f["xpts"].attrs["units"] == "us"
