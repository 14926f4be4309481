"""Versioned JSON snapshots of jobs: `job.save(path)`, `Client.load(path)`.

    {"schema_version": "1", "kind": "job", "job_id": ..., "task_id": ..., "state": ..., "last_seq": ...,
     "device": ..., "settings": {...}, "priority": ..., "labels": {...}, "fetch_diagnostics": ...,
     "raise_on_error": ..., "timings": ..., "metrics": ..., "metadata": ...,
     "result": {...}|null, "error": {...}|null, "history": [{"kind": "result"|"error", ...}]}
    {"schema_version": "1", "kind": "composite", "max_concurrency": 8, "jobs": [<job snapshot>...]}

A job saved in flight (SUBMITTED/RUNNING) resumes following the same job, from the saved event
seq, on `execute()`. Invalid JSON, another schema version, an unknown kind or missing fields
are refused with `SnapshotError` (a ValueError) naming the problem."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qsched.aio.outputs import JobError, JobOutput, JobResult

if TYPE_CHECKING:
    from qsched.aio.client import Client
    from qsched.aio.job import CompositeJob, Job

SCHEMA_VERSION = "1"


class SnapshotError(ValueError):
    """A snapshot this SDK cannot load."""


def job_to_snapshot(job: Job) -> dict[str, Any]:
    if job.state.value == "UNKNOWN":
        raise SnapshotError("a job in state UNKNOWN cannot be saved; refresh it first")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "job",
        "saved_at": datetime.now().astimezone().isoformat(),
        "job_id": job.job_id,
        "task_id": job.task_id,
        "state": job.state.value,
        "last_seq": job.last_seq,
        "device": job.device,
        "server_device": job._server_device,
        "owner": job.owner,
        "settings": job.settings(),
        "priority": job.priority,
        "labels": job.labels,
        "fetch_diagnostics": job.fetch_diagnostics,
        "raise_on_error": job._raise_on_error,
        "submitted_at": job._submitted_at.isoformat() if job._submitted_at else None,
        "timings": job.timings,
        "metrics": job.metrics,
        "metadata": job.metadata,
        "result": job.result.to_dict() if job.result is not None else None,
        "error": job.error.to_dict() if job.error is not None else None,
        "history": [o.to_dict() for o in job.history],
    }


def composite_to_snapshot(composite: CompositeJob) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "composite",
        "saved_at": datetime.now().astimezone().isoformat(),
        "max_concurrency": composite.max_concurrency,
        "jobs": [job_to_snapshot(j) for j in composite.jobs],
    }


def write(path: str | Path, snapshot: dict[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(snapshot, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _require(data: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise SnapshotError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, types):
        raise SnapshotError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _check_header(data: Any, where: str) -> str:
    if not isinstance(data, dict):
        raise SnapshotError(f"{where}: a snapshot is a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        if isinstance(version, str) and version.isdigit() and int(version) > int(SCHEMA_VERSION):
            raise SnapshotError(
                f"{where}: snapshot schema version {version} is newer than this SDK reads "
                f"({SCHEMA_VERSION}); upgrade qsched"
            )
        raise SnapshotError(f"{where}: unsupported snapshot schema version {version!r} (expected '1')")
    kind = data.get("kind")
    if kind not in ("job", "composite"):
        raise SnapshotError(f"{where}: unknown snapshot kind {kind!r} (expected 'job' or 'composite')")
    return kind


def job_from_snapshot(client: Client | None, data: Any, where: str = "snapshot") -> Job:
    from qsched.aio.job import Job, JobState

    if _check_header(data, where) != "job":
        raise SnapshotError(f"{where}: expected a job snapshot")
    settings = _require(data, "settings", dict, where)
    state_name = _require(data, "state", str, where)
    try:
        state = JobState(state_name)
    except ValueError:
        raise SnapshotError(f"{where}: unknown state {state_name!r}") from None
    if state is JobState.UNKNOWN:
        raise SnapshotError(f"{where}: state UNKNOWN cannot be loaded")
    device = _require(data, "device", str, where)
    try:
        kind = settings.get("kind")
        if kind == "lab_experiment":
            job = Job(
                client,
                device=device,
                experiment=(settings["experiment_module"], settings["experiment_class"]),
                config=settings.get("config"),
                config_revisions=settings.get("config_revisions") or {},
            )
        elif kind == "circuit":
            job = Job(
                client,
                device=device,
                program=settings["programs"],
                shots=settings.get("shots") or None,
                config=settings.get("compiler_options"),
            )
        else:
            raise SnapshotError(f"{where}: unknown settings kind {kind!r}")
        job.priority = int(data.get("priority") or 0)
        job.labels = dict(data.get("labels") or {})
        job.owner = data.get("owner")
        job.fetch_diagnostics = bool(data.get("fetch_diagnostics"))
        job._raise_on_error = bool(data.get("raise_on_error"))
        job.job_id = data.get("job_id")
        job.task_id = data.get("task_id")
        job.state = state
        job.last_seq = int(data.get("last_seq") or 0)
        job._server_device = data.get("server_device") or (device if job.job_id else None)
        submitted = data.get("submitted_at")
        job._submitted_at = datetime.fromisoformat(submitted) if submitted else None
        job.timings = data.get("timings")
        job.metrics = data.get("metrics")
        job.metadata = data.get("metadata")
        history = [JobOutput.from_dict(item) for item in _require(data, "history", list, where)]
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: invalid job snapshot ({exc})") from None
    for item in history:
        item.job = job
    job._history = history

    def current(key: str, cls: type) -> Any:
        value = data.get(key)
        if value is None:
            return None
        out = JobOutput.from_dict(value)
        if not isinstance(out, cls):
            raise SnapshotError(f"{where}: field {key!r} holds a {type(out).__name__}")
        # the same object as in history when it is there
        same = next((h for h in history if h == out), None)
        if same is None:
            out.job = job
        return same or out

    job._result = current("result", JobResult)
    job._error = current("error", JobError)
    return job


def from_snapshot(client: Client | None, data: Any, where: str = "snapshot") -> Job | CompositeJob:
    from qsched.aio.job import CompositeJob

    kind = _check_header(data, where)
    if kind == "job":
        return job_from_snapshot(client, data, where)
    jobs = _require(data, "jobs", list, where)
    children = [job_from_snapshot(client, j, f"{where}: jobs[{i}]") for i, j in enumerate(jobs)]
    return CompositeJob(children, max_concurrency=int(data.get("max_concurrency") or 8))


def read(path: str | Path) -> Any:
    text = Path(path).read_text()  # FileNotFoundError propagates
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"{path}: not valid JSON ({exc})") from None
