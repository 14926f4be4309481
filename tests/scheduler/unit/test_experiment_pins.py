"""Which experiment-repository commit a job's payload pins (issue 20): the executor's answer at
submit, the job's own commit on a re-run, a named revision resolved afresh."""

from __future__ import annotations

import pytest

from qsched_core.execution import Validated
from qsched_core.provenance import ResolvedRevision
from qsched_scheduler.domain import JobKind, NewJob, Payload
from qsched_scheduler.errors import InvalidArgument
from qsched_scheduler.experiment_pins import pinned, rerun_payload

C1, C2 = "a1" * 20, "b2" * 20
# A lab body as the job database holds it (qsched_core.payloads.to_body).
LAB = {
    "experiment_class": "Const",
    "experiment_module": "repolab.const",
    "expt_config_json": "{}",
    "config_revisions": {},
    "config_overrides": {},
}


def lab(**extra) -> Payload:
    return Payload(JobKind.LAB_EXPERIMENT, {**LAB, **extra})


def test_the_commit_the_executor_resolved_goes_into_the_payload():
    new = NewJob("alice", "qick", 0, lab(experiment_revision="main"))
    assert pinned(new, None) is new  # the executor did not answer: it pins at enqueue
    assert pinned(new, Validated()) is new  # not from the repository
    done = pinned(new, Validated((), ResolvedRevision("main", C1, tree_dirty=True)))
    assert done.payload.body == {**LAB, "experiment_revision": "main", "experiment_commit": C1,
                                 "experiment_tree_dirty": True}  # fmt: skip
    clean = pinned(new, Validated((), ResolvedRevision("main", C1)))
    assert "experiment_tree_dirty" not in clean.payload.body


def test_a_rerun_keeps_the_commit_unless_it_names_a_revision():
    current = lab(experiment_commit=C1, experiment_tree_dirty=True)
    assert rerun_payload(current, None) is None  # the store keeps the job's payload as it is
    settings = lab(expt_config_json='{"reps": 5}')
    kept = rerun_payload(current, settings)
    assert kept.body == {**settings.body, "experiment_commit": C1, "experiment_tree_dirty": True}
    named = rerun_payload(current, None, "v2")
    assert named.body == {**LAB, "experiment_revision": "v2"}  # the pin dropped: resolved afresh
    own = rerun_payload(current, lab(experiment_revision="dev", experiment_commit=C2))
    assert own.body["experiment_revision"] == "dev" and "experiment_commit" not in own.body
    with pytest.raises(InvalidArgument):
        rerun_payload(Payload(JobKind.CIRCUIT, {"qasm": ["x"]}), None, "main")
