"""The experiment-repository commit a lab job runs (docs/experiments.md, "The experiment
repository"): pinned in the job's payload at submit from the executor's answer, kept by a
re-run unless the re-run names another revision."""

from __future__ import annotations

from dataclasses import replace

from qsched_core.execution import Validated
from qsched_core.payloads import LabExperiment
from qsched_scheduler.domain import JobKind, NewJob, Payload
from qsched_scheduler.errors import InvalidArgument


def _unpinned(experiment: LabExperiment) -> LabExperiment:
    """Without the commit its revision resolved to (nor whether the tree was dirty then)."""
    return replace(experiment, experiment_commit="", experiment_tree_dirty=False)


def pinned(new: NewJob, validated: Validated | None) -> NewJob:
    """The job with the commit its revision resolved to, as the executor answered; unchanged
    when the executor did not answer or the experiment is not from its repository."""
    resolved = validated.resolved if validated is not None else None
    if resolved is None:
        return new
    experiment = new.payload.typed
    assert isinstance(experiment, LabExperiment)
    experiment = replace(
        experiment, experiment_commit=resolved.commit, experiment_tree_dirty=resolved.tree_dirty
    )
    return replace(new, payload=Payload.of(experiment))


def rerun_payload(current: Payload, new: Payload | None, revision: str = "") -> Payload | None:
    """The payload a re-run runs (None: the job's own, commit included). A `revision`, or one the
    new payload names, is resolved afresh (the pin is dropped); else the new settings keep the
    job's commit."""
    revision = revision.strip()
    if current.kind is not JobKind.LAB_EXPERIMENT:
        if revision:
            raise InvalidArgument(
                "EXPERIMENT_REVISION_UNUSED",
                "experiment_revision applies to lab experiments only",
                field="experiment_revision",
            )
        return new
    job = current.typed
    assert isinstance(job, LabExperiment)
    if revision:
        base = (new or current).typed
        if not isinstance(base, LabExperiment):  # new settings of another kind: refused at validation
            base = LabExperiment("", "")
        return Payload.of(replace(_unpinned(base), experiment_revision=revision))
    if new is None or new.kind is not JobKind.LAB_EXPERIMENT:
        return new
    settings = new.typed
    assert isinstance(settings, LabExperiment)
    settings = _unpinned(settings)  # a commit is never taken on trust
    if settings.experiment_revision:
        return Payload.of(settings)
    return Payload.of(
        replace(
            settings,
            experiment_revision=job.experiment_revision,
            experiment_commit=job.experiment_commit,
            experiment_tree_dirty=job.experiment_tree_dirty,
        )
    )
