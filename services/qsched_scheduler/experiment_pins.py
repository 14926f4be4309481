"""The experiment-repository commit a lab job runs (docs/experiments.md, "The experiment
repository"): pinned in the job's payload at submit from the executor's answer, kept by a
re-run unless the re-run names another revision."""

from __future__ import annotations

from dataclasses import replace

from qsched_core.execution import Validated
from qsched_scheduler.domain import JobKind, NewJob, Payload
from qsched_scheduler.errors import InvalidArgument

# The payload keys of the pin (qsched_core.payloads.to_body): the revision the job named, the
# commit it resolved to and whether the repository's working tree was dirty then.
PIN_KEYS = ("experiment_commit", "experiment_tree_dirty")


def pinned(new: NewJob, validated: Validated | None) -> NewJob:
    """The job with the commit its revision resolved to, as the executor answered; unchanged
    when the executor did not answer or the experiment is not from its repository."""
    resolved = validated.resolved if validated is not None else None
    if resolved is None:
        return new
    body = {k: v for k, v in new.payload.body.items() if k not in PIN_KEYS}
    body["experiment_commit"] = resolved.commit
    if resolved.tree_dirty:
        body["experiment_tree_dirty"] = True
    return replace(new, payload=Payload(new.payload.kind, body))


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
    if revision:
        body = {k: v for k, v in (new or current).body.items() if k not in PIN_KEYS}
        body["experiment_revision"] = revision
        return Payload(current.kind, body)
    if new is None or new.kind is not JobKind.LAB_EXPERIMENT:
        return new
    body = {k: v for k, v in new.body.items() if k not in PIN_KEYS}  # a commit is never taken on trust
    if body.get("experiment_revision"):
        return Payload(new.kind, body)
    for key in ("experiment_revision", *PIN_KEYS):
        if current.body.get(key):
            body[key] = current.body[key]
    return Payload(new.kind, body)
