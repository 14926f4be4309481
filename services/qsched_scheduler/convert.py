"""Proto <-> domain translation for qsched.jobs.v1."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.wire import timestamp, to_datetime
from qsched_core.payloads import BenchmarkConfig, CircuitProgram, LabExperiment
from qsched_runtime.execution_wire import code_to_pb
from qsched_scheduler.calendar import NewWindow, Window, WindowKind
from qsched_scheduler.calibration.state import CalibrationState
from qsched_scheduler.data_cache import CachedFile
from qsched_scheduler.domain import (
    Change,
    ErrorDetail,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    Payload,
    Reason,
    Run,
)
from qsched_scheduler.errors import InvalidArgument
from qsched_scheduler.sessions import FailurePolicy, SessionState
from qsched_scheduler.sessions import Session as DeviceSession

STATE_TO_PB = {state: pb.Job.State.Value(f"STATE_{state.value}") for state in JobState}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}
KIND_TO_PB = {kind: pb.JobKind.Value(f"JOB_KIND_{kind.value}") for kind in JobKind}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}


def payload_from_pb(message: pb.JobPayload) -> Payload | None:
    which = message.WhichOneof("payload")
    if which == "lab_experiment":
        lab = message.lab_experiment
        return Payload.of(
            LabExperiment(
                experiment_class=lab.experiment_class,
                experiment_module=lab.experiment_module,
                expt_config_json=lab.expt_config_json,
                config_revisions=dict(lab.config_revisions),
                config_overrides=dict(lab.config_overrides),
                calibrations=dict(lab.calibrations),
                # experiment_commit is output only: pinned at submit.
                experiment_revision=lab.experiment_revision.strip(),
                yield_at_safe_points=lab.yield_at_safe_points,
            )
        )
    if which == "circuit":
        circuit = message.circuit
        return Payload.of(
            CircuitProgram(
                qasm=tuple(circuit.qasm),
                shots=circuit.shots,
                compiler_options_json=circuit.compiler_options_json,
                qpy=tuple(circuit.qpy),
            )
        )
    if which == "benchmark":
        benchmark = message.benchmark
        return Payload.of(BenchmarkConfig(config_json=benchmark.config_json, suite_json=benchmark.suite_json))
    return None


def payload_to_pb(payload: Payload) -> pb.JobPayload:
    typed = payload.typed
    if isinstance(typed, LabExperiment):
        return pb.JobPayload(
            lab_experiment=pb.LabExperiment(
                experiment_class=typed.experiment_class,
                experiment_module=typed.experiment_module,
                expt_config_json=typed.expt_config_json,
                config_revisions=typed.config_revisions,
                config_overrides=typed.config_overrides,
                calibrations=typed.calibrations,
                experiment_revision=typed.experiment_revision,
                experiment_commit=typed.experiment_commit,
                experiment_tree_dirty=typed.experiment_tree_dirty,
                yield_at_safe_points=typed.yield_at_safe_points,
            )
        )
    if isinstance(typed, CircuitProgram):
        return pb.JobPayload(
            circuit=pb.CircuitProgram(
                qasm=typed.qasm,
                shots=typed.shots,
                compiler_options_json=typed.compiler_options_json,
                qpy=typed.qpy,
            )
        )
    return pb.JobPayload(
        benchmark=pb.BenchmarkConfig(config_json=typed.config_json, suite_json=typed.suite_json)
    )


def _error(error: ErrorDetail | None) -> pb.JobError | None:
    return pb.JobError(reason=error.reason, message=error.message) if error else None


def reason_to_pb(reason: Reason | None) -> pb.RunReason | None:
    if reason is None:
        return None
    return pb.RunReason(
        policy=reason.policy, summary=reason.summary, details_json=json.dumps(reason.details, sort_keys=True)
    )


def _basic(payload: pb.JobPayload) -> pb.JobPayload:
    """The payload without its documents (JobView.BASIC)."""
    which = payload.WhichOneof("payload")
    if which == "lab_experiment":
        payload.lab_experiment.ClearField("expt_config_json")
    elif which == "circuit":
        payload.circuit.ClearField("qasm")
        payload.circuit.ClearField("qpy")
    elif which == "benchmark":
        payload.benchmark.Clear()
    return payload


def run_to_pb(run: Run, full: bool = True) -> pb.Run:
    message = _run_to_pb(run)
    if not full and message.HasField("payload"):
        _basic(message.payload)
    return message


def _run_to_pb(run: Run) -> pb.Run:
    return pb.Run(
        task_id=run.task_id,
        attempt=run.attempt,
        state=STATE_TO_PB[run.state],
        start_time=timestamp(run.start_time),
        end_time=timestamp(run.end_time),
        progress=run.progress,
        error=_error(run.error),
        data_file_path=run.data_file_path,
        summary=run.summary,
        config_revisions=run.config_revisions,
        provider_task_ids=run.provider_task_ids,
        payload=payload_to_pb(run.payload) if run.payload else None,
        job_id=run.job_id,
        provider_submission_id=run.provider_submission_id,
        reason=reason_to_pb(run.reason),
        staged=run.staged,
        data=pb.DataRef(name=run.data.name, sha256=run.data.sha256, size_bytes=run.data.size_bytes)
        if run.data
        else None,
        code=code_to_pb(run.code),
    )


def job_to_pb(job: Job, full: bool = True) -> pb.Job:
    message = _job_to_pb(job)
    if not full:
        _basic(message.payload)
        if message.HasField("current_run") and message.current_run.HasField("payload"):
            _basic(message.current_run.payload)
    return message


def _job_to_pb(job: Job) -> pb.Job:
    return pb.Job(
        job_id=job.job_id,
        owner=job.owner,
        kind=KIND_TO_PB[job.kind],
        device=job.device,
        priority=job.priority,
        state=STATE_TO_PB[job.state],
        payload=payload_to_pb(job.payload),
        create_time=timestamp(job.create_time),
        start_time=timestamp(job.start_time),
        end_time=timestamp(job.end_time),
        queue_position=job.queue_position,
        estimated_start_time=timestamp(job.estimated_start_time),
        current_run=run_to_pb(job.current_run) if job.current_run else None,
        run_count=job.run_count,
        error=_error(job.error),
        last_seq=job.last_seq,
        cancel_requested=job.cancel_requested,
        labels=job.labels,
        waiting_reason=reason_to_pb(job.waiting_reason),
        task_id=job.task_id,
    )


def event_to_pb(event: Event, job: Job | None = None) -> pb.JobEvent:
    return pb.JobEvent(
        seq=event.seq,
        job_id=event.job_id,
        time=timestamp(event.time),
        state=STATE_TO_PB[event.state],
        message=event.message,
        progress=event.progress,
        task_id=event.task_id,
        job=job_to_pb(job) if job is not None else None,
        log=pb.JobLog(lines=list(event.log.lines), dropped=event.log.dropped)
        if event.log is not None
        else None,
    )


def change_to_event_pb(change: Change) -> pb.JobEvent:
    """Live events carry the job when the state changed (or the job ended). One change goes to
    every watcher of the job: it is converted once (the last few are remembered, by identity)
    and shared: callers must not modify it (embedding it in a response copies it)."""
    key = id(change)
    cached = _EVENT_CACHE.get(key)
    if cached is None or cached[0] is not change:
        changed = change.previous_state is not change.event.state or change.event.state.terminal
        cached = _EVENT_CACHE[key] = (change, event_to_pb(change.event, change.job if changed else None))
        while len(_EVENT_CACHE) > _EVENT_CACHE_SIZE:
            del _EVENT_CACHE[next(iter(_EVENT_CACHE))]
    return cached[1]


# id(change) -> (change, its JobEvent); holding the change keeps its id from being reused.
_EVENT_CACHE: dict[int, tuple[Change, pb.JobEvent]] = {}
_EVENT_CACHE_SIZE = 64


def data_file_to_pb(file: CachedFile) -> pb.RunDataFile:
    """A whole data file, named as FetchJobData names it (the base name)."""
    return pb.RunDataFile(
        task_id=file.task_id, file_name=file.name.rsplit("/", 1)[-1], sha256=file.sha256, content=file.data
    )


def filter_from_pb(request: pb.ListJobsRequest) -> JobFilter:
    try:
        states = frozenset(STATE_FROM_PB[s] for s in request.states)
    except KeyError as exc:
        raise InvalidArgument("INVALID_STATE", "states contains an unknown or unspecified state") from exc
    kind = KIND_FROM_PB.get(request.kind) if request.kind else None
    if request.kind and kind is None:
        raise InvalidArgument("INVALID_KIND", f"unknown kind {request.kind}")
    view = ListView.QUEUE if request.view == pb.LIST_VIEW_QUEUE else ListView.HISTORY
    return JobFilter(view=view, states=states, owner=request.owner, device=request.device, kind=kind)


# -- reservations (calendar.py) ----------------------------------------------------------------------
WINDOW_KIND_TO_PB = {kind: pb.Reservation.Kind.Value(f"KIND_{kind.value}") for kind in WindowKind}
WINDOW_KIND_FROM_PB = {v: k for k, v in WINDOW_KIND_TO_PB.items()}


def reservation_to_pb(window: Window) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=window.reservation_id,
        device=window.device,
        kind=WINDOW_KIND_TO_PB[window.kind],
        start_time=timestamp(window.start),
        end_time=timestamp(window.end),
        holders=list(window.holders),
        hard_end=window.hard_end,
        note=window.note,
        created_by=window.created_by,
        create_time=timestamp(window.create_time),
        cancelled=window.cancelled,
        cancelled_by=window.cancelled_by,
    )


def new_window_from_pb(request: pb.CreateReservationRequest) -> NewWindow:
    kind = WINDOW_KIND_FROM_PB.get(request.kind)
    if kind is None:
        raise InvalidArgument(
            "INVALID_WINDOW", "kind must be exclusive, calibration or maintenance", field="kind"
        )
    if not request.HasField("start_time") or not request.HasField("end_time"):
        raise InvalidArgument("INVALID_WINDOW", "start_time and end_time are required", field="start_time")
    start, end = to_datetime(request.start_time), to_datetime(request.end_time)
    assert start is not None and end is not None
    return NewWindow(request.device, kind, start, end, tuple(request.holders), request.hard_end, request.note)


# -- sessions (sessions.py) ---------------------------------------------------------------------------------
SESSION_STATE_TO_PB = {st: pb.DeviceSession.State.Value(f"STATE_{st.value}") for st in SessionState}
FAILURE_TO_PB = {f: pb.DeviceSession.FailurePolicy.Value(f"FAILURE_POLICY_{f.value}") for f in FailurePolicy}
FAILURE_FROM_PB = {**{v: k for k, v in FAILURE_TO_PB.items()}, 0: FailurePolicy.CONTINUE}


def session_to_pb(session: DeviceSession) -> pb.DeviceSession:
    out = pb.DeviceSession(
        session_id=session.session_id,
        device=session.device,
        owner=session.owner,
        state=SESSION_STATE_TO_PB[session.state],
        open_time=timestamp(session.open_time),
        failure_policy=FAILURE_TO_PB[session.failure_policy],
        end_time=timestamp(session.end_time),
        end_reason=session.end_reason,
    )
    out.max_length.FromTimedelta(session.max_length)
    out.idle_timeout.FromTimedelta(session.idle_timeout)
    return out


def session_request_from_pb(request: pb.OpenSessionRequest) -> tuple[timedelta, timedelta, FailurePolicy]:
    policy = FAILURE_FROM_PB.get(request.failure_policy)
    if policy is None:
        raise InvalidArgument("INVALID_SESSION", "unknown failure_policy", field="failure_policy")
    return request.max_length.ToTimedelta(), request.idle_timeout.ToTimedelta(), policy


# -- calibration (docs/calibration.md) ------------------------------------------------------------------
def calibration_to_pb(
    state: CalibrationState, now: datetime, depends_on: Sequence[str] = ()
) -> pb.Calibration:
    return pb.Calibration(
        device=state.device,
        name=state.name,
        status=pb.CalibrationStatus.Value(f"CALIBRATION_STATUS_{state.shown_status(now)}"),
        job_id=state.job_id,
        last_run_time=timestamp(state.last_run_time),
        passed_time=timestamp(state.passed_time),
        fresh_until=timestamp(state.fresh_until),
        revision_id=state.revision_id,
        values=dict(state.values),
        failures=state.failures,
        last_error=state.last_error,
        depends_on=list(depends_on),
    )
