"""Helpers shared by the sync and asyncio SDKs: proto <-> Python values, payloads, state names."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.wire import to_datetime

QUEUED = pb.Job.STATE_QUEUED
RUNNING = pb.Job.STATE_RUNNING
SUCCEEDED = pb.Job.STATE_SUCCEEDED
FAILED = pb.Job.STATE_FAILED
CANCELLED = pb.Job.STATE_CANCELLED
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})

# The seed's status names.
SEED_STATUS = {
    pb.Job.STATE_UNSPECIFIED: "unknown",
    QUEUED: "pending",
    RUNNING: "running",
    SUCCEEDED: "completed",
    FAILED: "failed",
    CANCELLED: "cancelled",
}
SEED_STATUS_TO_PB = {v: k for k, v in SEED_STATUS.items() if k}
# Server names (queued, succeeded...) are accepted too wherever a status filter is taken.
SEED_STATUS_TO_PB.update({"queued": QUEUED, "succeeded": SUCCEEDED, "canceled": CANCELLED})
SEED_STATUSES = ["pending", "running", "completed", "failed", "cancelled"]

# The seed's per-type config version fields, by config type name in the config service.
SEED_CONFIG_FIELDS = {
    "hardware_config": "hardware_config_version_id",
    "multiphoton_config": "multiphoton_config_version_id",
    "floquet_storage_swap": "floquet_storage_version_id",
    "man1_storage_swap": "man1_storage_version_id",
}


def is_task_id(ident: str) -> bool:
    """Whether `ident` is a task id (a UUID) rather than a job id (JOB-YYYYMMDD-NNNNN)."""
    try:
        uuid.UUID(ident)
    except (ValueError, TypeError):
        return False
    return True


def job_ref(ident: str) -> dict[str, str]:
    """The GetJob / CancelJob / WatchJob fields naming a job by `ident`: its job id, or a task id
    (the job's own, which it has from submit, or one of its runs')."""
    return {"task_id": ident} if is_task_id(ident) else {"job_id": ident}


def is_terminal(state: int) -> bool:
    return state in TERMINAL


def state_name(state: int) -> str:
    return pb.Job.State.Name(state).removeprefix("STATE_").lower()


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def lab_payload(
    experiment_class: str,
    experiment_module: str,
    expt_config: dict[str, Any] | str | None,
    config_revisions: dict[str, str] | None = None,
    experiment_revision: str = "",
    yield_at_safe_points: bool = False,
) -> pb.JobPayload:
    import json  # here, not at the top: the CLI's look-ups never need it

    text = expt_config if isinstance(expt_config, str) else json.dumps(expt_config or {})
    return pb.JobPayload(
        lab_experiment=pb.LabExperiment(
            experiment_class=experiment_class,
            experiment_module=experiment_module,
            expt_config_json=text,
            config_revisions=config_revisions or {},
            experiment_revision=experiment_revision or "",
            yield_at_safe_points=bool(yield_at_safe_points),
        )
    )


def circuit_payload(
    programs: list[str], shots: int = 0, compiler_options: dict[str, Any] | None = None
) -> pb.JobPayload:
    return pb.JobPayload(
        circuit=pb.CircuitProgram(
            qasm=list(programs),
            shots=int(shots or 0),
            compiler_options_json=_dumps(compiler_options) if compiler_options else "",
        )
    )


def payload_to_dict(payload: pb.JobPayload) -> dict[str, Any]:
    """A JSON-able description of a payload (the memento of a run)."""
    which = payload.WhichOneof("payload")
    if which == "lab_experiment":
        lab = payload.lab_experiment
        return {
            "kind": "lab_experiment",
            "experiment_class": lab.experiment_class,
            "experiment_module": lab.experiment_module,
            "config": _loads(lab.expt_config_json),
            "config_revisions": dict(lab.config_revisions),
        }
    if which == "circuit":
        c = payload.circuit
        return {
            "kind": "circuit",
            "programs": list(c.qasm),
            "shots": c.shots,
            "compiler_options": _loads(c.compiler_options_json) if c.compiler_options_json else None,
        }
    if which == "benchmark":
        return {"kind": "benchmark", "config": _loads(payload.benchmark.config_json)}
    return {"kind": None}


def payload_from_dict(data: dict[str, Any]) -> pb.JobPayload:
    kind = data.get("kind")
    if kind == "lab_experiment":
        return lab_payload(
            data["experiment_class"],
            data["experiment_module"],
            data.get("config") or {},
            data.get("config_revisions") or {},
        )
    if kind == "circuit":
        return circuit_payload(data["programs"], data.get("shots") or 0, data.get("compiler_options"))
    if kind == "benchmark":
        return pb.JobPayload(benchmark=pb.BenchmarkConfig(config_json=_dumps(data.get("config") or {})))
    raise ValueError(f"unknown payload kind {kind!r}")


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value)


def _loads(text: str) -> Any:
    import json

    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_timings(job: pb.Job, run: pb.Run | None) -> dict[str, Any]:
    created = to_datetime(job.create_time)
    started = to_datetime(run.start_time) if run is not None else None
    ended = to_datetime(run.end_time) if run is not None else None
    ended = ended or to_datetime(job.end_time)
    out: dict[str, Any] = {"created": iso(created), "started": iso(started), "ended": iso(ended)}
    if run is not None and run.attempt <= 1 and created and started:
        out["queue_s"] = (started - created).total_seconds()
    if started and ended:
        out["run_s"] = (ended - started).total_seconds()
    return out


def list_jobs(
    calls: Any, view: int, states: list[int], owner: str, device: str, limit: int, full: bool = True
) -> list[pb.Job]:
    """Jobs of ListJobs (`calls`: a qsched.calls.Calls of JobService), every page up to `limit`;
    `full=False`: without the payloads' documents (settings, circuits), as a table needs."""
    from qsched._pages import collect

    def page(token: str, size: int) -> pb.ListJobsResponse:
        request = pb.ListJobsRequest(
            view=view,
            states=states,
            owner=owner,
            device=device,
            page_size=size,
            page_token=token,
            job_view=pb.JOB_VIEW_FULL if full else pb.JOB_VIEW_BASIC,
        )
        return calls("ListJobs", request)

    return collect(page, lambda response: response.jobs, limit)
