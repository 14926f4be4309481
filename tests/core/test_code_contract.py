"""The run contract's code-provenance fields (issue 20): new, optional, and invisible to jobs
that do not use the experiment repository."""

from __future__ import annotations

from qsched_core.execution import Cancelled, Failed, Succeeded, Validated
from qsched_core.payloads import JobKind, LabExperiment, from_body, to_body
from qsched_core.provenance import CodeProvenance, PackageSource, ResolvedRevision

PLAIN_BODY = {
    "experiment_class": "T1Experiment",
    "experiment_module": "",
    "expt_config_json": "{}",
    "config_revisions": {},
    "config_overrides": {},
}


def test_a_job_without_a_repository_stores_what_it_always_stored():
    payload = from_body(JobKind.LAB_EXPERIMENT, PLAIN_BODY)
    assert (payload.experiment_revision, payload.experiment_commit, payload.experiment_tree_dirty) == (
        "",
        "",
        False,
    )
    assert to_body(payload) == PLAIN_BODY


def test_the_pinned_commit_round_trips_through_the_stored_body():
    payload = LabExperiment(
        "TrainExperiment",
        "mylab.train",
        experiment_revision="main",
        experiment_commit="c" * 40,
        experiment_tree_dirty=True,
    )
    body = to_body(payload)
    assert body["experiment_commit"] == "c" * 40
    assert from_body(JobKind.LAB_EXPERIMENT, body) == payload


def test_terminal_updates_and_validation_default_to_no_code():
    assert Succeeded().code is None and Failed("X").code is None and Cancelled().code is None
    code = CodeProvenance(PackageSource("qsched", "0.1.0"))
    assert Succeeded(code=code).code is code
    assert Validated() == Validated((), None)
    resolved = ResolvedRevision("main", "c" * 40, False)
    assert Validated(resolved=resolved).resolved.commit == "c" * 40
