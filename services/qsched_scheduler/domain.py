"""Jobs, runs and events as the scheduler's logic sees them (no gRPC, no SQL)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

from qsched_core import payloads as typed_payloads
from qsched_core.execution import DataRef
from qsched_core.payloads import LabExperiment
from qsched_core.provenance import CodeProvenance

# Documented limits (README "Limits"). Higher priority runs sooner.
MIN_PRIORITY = -100
MAX_PRIORITY = 100
MAX_PAYLOAD_BYTES = 1024 * 1024
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_OWNER_LENGTH = 128
MAX_REQUEST_ID_LENGTH = 128
MAX_LABELS = 32
MAX_LABEL_KEY_LENGTH = 63  # as Kubernetes label names: short keys, values for ids and tags
MAX_LABEL_VALUE_LENGTH = 256


class JobState(enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobKind(enum.Enum):
    LAB_EXPERIMENT = "LAB_EXPERIMENT"
    CIRCUIT = "CIRCUIT"
    BENCHMARK = "BENCHMARK"


class ListView(enum.Enum):
    QUEUE = "QUEUE"  # queued and running jobs in run order
    HISTORY = "HISTORY"  # everything, newest first


@dataclass(frozen=True)
class ErrorDetail:
    """Why a job or run failed or was cancelled."""

    reason: str
    message: str


@dataclass(frozen=True)
class Reason:
    """Why a run was picked (or why a job waits): the queue policy's answer, stored with the run.
    `details` is JSON-able (e.g. the priority and the jobs ahead)."""

    policy: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Payload:
    """What a job runs. `body` is its storage form (the JSON object the job database holds,
    qsched_core.payloads.to_body); the scheduler reads it through `typed`."""

    kind: JobKind
    body: dict[str, Any]

    @cached_property
    def typed(self) -> typed_payloads.Payload:
        """The payload as its kind's class (read once: a payload's body is never changed)."""
        return typed_payloads.from_body(typed_payloads.JobKind(self.kind.value), self.body)

    @classmethod
    def of(cls, typed: typed_payloads.Payload) -> Payload:
        """The payload that stores `typed` (changed settings are a new typed payload, not a
        changed body)."""
        return cls(JobKind(typed.kind.value), typed_payloads.to_body(typed))


@dataclass
class Run:
    task_id: str
    attempt: int
    state: JobState
    start_time: datetime | None = None
    end_time: datetime | None = None
    progress: float = 0.0
    error: ErrorDetail | None = None
    data_file_path: str = ""
    summary: dict[str, float] = field(default_factory=dict)
    config_revisions: dict[str, str] = field(default_factory=dict)
    provider_task_ids: list[str] = field(default_factory=list)
    executor_seq: int = 0  # last executor update applied (for re-attach)
    payload: Payload | None = None  # the settings that produced this run (its memento)
    job_id: str = ""
    provider_submission_id: str = ""  # the gateway's id of a benchmark/suite submission
    result_json: str = ""  # provider results, once fetched (the result cache)
    result_time: datetime | None = None
    # Lab runs: staged = handed to the executor's queue, not started yet (the job is QUEUED).
    staged: bool = False
    reason: Reason | None = None  # why the queue policy picked this run
    data: DataRef | None = None  # the run's data file on its executor
    code: CodeProvenance | None = None  # lab runs: the code that ran it (from the executor's end)


@dataclass
class Job:
    job_id: str
    owner: str
    device: str
    priority: int
    payload: Payload
    state: JobState
    create_time: datetime
    order: int = 0  # submission order within the store: history is newest first by it
    queue_order: int = 0  # FIFO tie-breaker within a priority; a re-run gets a new one (back of the queue)
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: ErrorDetail | None = None
    last_seq: int = 0
    cancel_requested: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    current_run: Run | None = None
    run_count: int = 0
    trace_parent: str = ""  # W3C traceparent of the submit, so one job is one trace
    staged_task_id: str = ""  # pipelined dispatch: a QUEUED job already handed to the executor
    # The job's task id: that of its latest run, or, while it waits, of the run it will have next
    # (allocated when it is queued: at submit and at rerun). A handle can follow and cancel the
    # job by it before it starts; a run staged or claimed for the job takes it.
    task_id: str = ""
    # Filled on reads of queued jobs.
    queue_position: int = 0
    estimated_start_time: datetime | None = None
    waiting_reason: Reason | None = None  # why a queued job has not started (the queue policy)

    @property
    def kind(self) -> JobKind:
        return self.payload.kind


@dataclass(frozen=True)
class QueuedJob:
    """A queued job as the queue index holds it: enough to order it and pick it."""

    job_id: str
    device: str
    priority: int
    queue_order: int
    owner: str
    kind: JobKind
    staged_task_id: str = ""
    pins_main: bool = True  # a lab job naming no revision and no override: pinned from memory
    # Issue 13 (calendar.py): the reservation it targets and whether it is a calibration job (labels).
    reservation: str = ""
    calibration: bool = False
    session: str = ""  # sessions.py: the session it joined (label "session")
    # Calibrations the job needs fresh: (name, oldest accepted age in s; 0 = the definition's).
    calibrations: tuple[tuple[str, float], ...] = ()
    preempted: bool = False  # its last run yielded at a safe point: the next one may continue it


# A run that yielded at a safe point ends CANCELLED with this error reason; its job is queued
# again at its place, with the same reason as why (docs/calibration.md, "Yielding at safe points").
PREEMPTED = "PREEMPTED"


def lab_experiment(payload: Payload) -> LabExperiment | None:
    """A lab payload's experiment; None for other kinds (whose bodies are not read for this:
    a circuit's QPY is decoded only when it is needed)."""
    if payload.kind is not JobKind.LAB_EXPERIMENT:
        return None
    typed = payload.typed
    assert isinstance(typed, LabExperiment)
    return typed


def for_executor(payload: Payload) -> LabExperiment:
    """A lab payload as the executor takes it: an empty expt_config_json (as stored) is `{}`."""
    experiment = lab_experiment(payload)
    assert experiment is not None
    return replace(experiment, expt_config_json=experiment.expt_config_json or "{}")


def yields_at_safe_points(payload: Payload) -> bool:
    """The job allows being asked to yield between averaging rounds (LabExperiment setting)."""
    experiment = lab_experiment(payload)
    return experiment is not None and experiment.yield_at_safe_points


def pins_main(payload: Payload) -> bool:
    """True when a lab payload takes every config from its main revision."""
    experiment = lab_experiment(payload)
    return experiment is None or experiment.pins_main


# The labels a job targets a reservation with, and marks itself a calibration job with (calendar.py).
RESERVATION_LABEL = "reservation"
CALIBRATION_LABEL = "calibration"


def reservation_of(labels: dict[str, str]) -> tuple[str, bool]:
    """A job's reservation target and calibration flag, from its labels."""
    calibration = labels.get(CALIBRATION_LABEL, "").lower() in ("true", "1", "yes")
    return labels.get(RESERVATION_LABEL, ""), calibration


def calibration_needs(payload: Payload) -> tuple[tuple[str, float], ...]:
    """A lab payload's `calibrations` ({name: max_age_s}), as QueuedJob carries them."""
    experiment = lab_experiment(payload)
    needs = experiment.calibrations if experiment is not None else {}
    return tuple(sorted((str(k), float(v or 0.0)) for k, v in needs.items()))


def queued_job(job: Job) -> QueuedJob:
    reservation, calibration = reservation_of(job.labels)
    return QueuedJob(
        job.job_id,
        job.device,
        job.priority,
        job.queue_order,
        job.owner,
        job.kind,
        job.staged_task_id,
        pins_main(job.payload),
        reservation,
        calibration,
        job.labels.get("session", ""),
        calibration_needs(job.payload),
        job.error is not None and job.error.reason == PREEMPTED,
    )


@dataclass(frozen=True)
class LogLines:
    """Log lines a run wrote (live output): kept as an event of its job."""

    lines: tuple[str, ...]
    dropped: int = 0  # lines the executor dropped over its caps just before these

    def to_json(self) -> str:
        return json.dumps({"lines": list(self.lines), "dropped": self.dropped})

    @classmethod
    def from_json(cls, raw: str | None) -> LogLines | None:
        if not raw:
            return None
        value = json.loads(raw)
        return cls(tuple(str(x) for x in value.get("lines", ())), int(value.get("dropped", 0)))


@dataclass(frozen=True)
class Event:
    """One entry of a job's event log: what WatchJob replays."""

    job_id: str
    seq: int
    time: datetime
    state: JobState
    message: str
    progress: float = 0.0
    task_id: str = ""
    log: LogLines | None = None  # a log event: the run's lines (state and progress unchanged)


@dataclass(frozen=True)
class NewJob:
    """A validated submission, before it has an id."""

    owner: str
    device: str
    priority: int
    payload: Payload
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    trace_parent: str = ""
    # The owner's queued-jobs quota (0: none), checked in the inserting transaction, so it holds
    # exactly across scheduler replicas.
    queued_limit: int = 0


@dataclass(frozen=True)
class JobFilter:
    view: ListView = ListView.HISTORY
    states: frozenset[JobState] = frozenset()
    owner: str = ""
    device: str = ""
    kind: JobKind | None = None


@dataclass(frozen=True)
class Change:
    """A committed mutation: the job after it and the event it logged."""

    job: Job
    event: Event
    previous_state: JobState | None = None
