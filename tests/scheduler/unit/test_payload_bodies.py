"""The scheduler reads payloads as their typed classes (qsched_core.payloads); the job database
keeps the JSON bodies it always held: a stored body read and written back is unchanged."""

from __future__ import annotations

from dataclasses import replace

import pytest

from qsched_core.payloads import BenchmarkConfig, CircuitProgram, LabExperiment, to_body
from qsched_scheduler.convert import payload_from_pb, payload_to_pb
from qsched_scheduler.domain import JobKind, Payload, calibration_needs, pins_main, yields_at_safe_points

LAB = {
    "experiment_class": "Rabi",
    "experiment_module": "lab.rabi",
    "expt_config_json": '{"reps": 100}',
    "config_revisions": {},
    "config_overrides": {},
}
STORED = [
    (JobKind.LAB_EXPERIMENT, LAB),
    (JobKind.LAB_EXPERIMENT, {**LAB, "expt_config_json": ""}),  # submitted without settings
    (
        JobKind.LAB_EXPERIMENT,
        {
            **LAB,
            "config_revisions": {"hardware": "r7"},
            "config_overrides": {"channels": "a: 1\n"},
            "calibrations": {"t1": 3600.0, "readout": 0.0},
            "experiment_revision": "main",
            "experiment_commit": "a1" * 20,
            "experiment_tree_dirty": True,
            "yield_at_safe_points": True,
        },
    ),
    (
        JobKind.CIRCUIT,
        {"qasm": ["OPENQASM 3.0;"], "shots": 100, "compiler_options_json": "", "qpy_hex": ["00ff"]},
    ),
    (JobKind.BENCHMARK, {"config_json": '{"benchmark_name": "BSEQ"}', "suite_json": ""}),
]


@pytest.mark.parametrize(("kind", "body"), STORED)
def test_a_stored_body_round_trips_unchanged(kind, body):
    payload = Payload(kind, body)
    again = Payload.of(payload.typed)
    assert again == payload
    assert list(again.body) == list(body)  # the same keys, in the same order
    # Through the API's form too, but for the pin: output only, a client cannot set it.
    pin = ("experiment_commit", "experiment_tree_dirty")
    unpinned = {k: v for k, v in body.items() if k not in pin}
    assert payload_from_pb(payload_to_pb(payload)) == Payload(kind, unpinned)


def test_the_scheduler_settings_of_a_lab_body_are_typed():
    _, body = STORED[2]
    typed = Payload(JobKind.LAB_EXPERIMENT, body).typed
    assert isinstance(typed, LabExperiment)
    assert typed.calibrations == {"t1": 3600.0, "readout": 0.0} and typed.yield_at_safe_points
    payload = Payload(JobKind.LAB_EXPERIMENT, body)
    assert calibration_needs(payload) == (("readout", 0.0), ("t1", 3600.0))
    assert yields_at_safe_points(payload) and not pins_main(payload)
    plain = Payload(JobKind.LAB_EXPERIMENT, LAB)
    assert calibration_needs(plain) == () and not yields_at_safe_points(plain) and pins_main(plain)


def test_unset_settings_stay_out_of_the_body():
    body = to_body(LabExperiment("Rabi", "lab.rabi"))
    assert set(body) == {
        "experiment_class",
        "experiment_module",
        "expt_config_json",
        "config_revisions",
        "config_overrides",
    }
    changed = replace(
        LabExperiment("Rabi", "lab.rabi", yield_at_safe_points=True), yield_at_safe_points=False
    )
    assert to_body(changed) == body
    assert Payload.of(CircuitProgram(("q",), 1, qpy=(b"\x01",))).body["qpy_hex"] == ["01"]
    assert Payload.of(BenchmarkConfig(suite_json="{}")).kind is JobKind.BENCHMARK
