"""The calibration states store: the same answers from memory, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from qsched_scheduler.calibration.sql_store import SqlCalibrationStore
from qsched_scheduler.calibration.state import CalibrationState, MemoryCalibrationStore, Status
from qsched_scheduler.store.engine import make_engine


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest):
    if request.param == "memory":
        return MemoryCalibrationStore()
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "clean_postgres_url")
    return SqlCalibrationStore(make_engine(url))


def test_states_are_kept_per_device_and_name_and_replaced(store) -> None:
    t = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    rabi = CalibrationState(
        "qick", "rabi", Status.FRESH, "JOB-20261207-00002", t, t, t + timedelta(hours=1),
        "CFG-HW-20261207-00002", {"pi_gain": 0.44}, 0, "",
    )  # fmt: skip
    store.put_calibration_state(rabi)
    store.put_calibration_state(CalibrationState("qick", "qubit_freq", Status.RUNNING, "JOB-20261207-00001"))
    store.put_calibration_state(CalibrationState("other", "rabi"))
    assert [(s.device, s.name) for s in store.calibration_states()] == [
        ("other", "rabi"),
        ("qick", "qubit_freq"),
        ("qick", "rabi"),
    ]
    assert store.calibration_states()[2] == rabi
    failed = CalibrationState(
        "qick", "rabi", Status.FAILED, "JOB-20261207-00003", t, t, t, "", {}, 1, "bad fit"
    )  # fmt: skip
    store.put_calibration_state(failed)
    assert store.calibration_states()[2] == failed
