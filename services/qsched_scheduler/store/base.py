"""The storage interfaces of the scheduler, typed at their callers: the queue store (admission
and dispatch), the run log (dispatch) and queries (the API, estimates, start-up).

Every mutating call is one transaction and returns the events it logged so the caller can
publish them afterwards (after the commit). Implementations are synchronous; `StoreThread`
runs them off the event loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qsched_core.execution import DataRef
from qsched_core.provenance import CodeProvenance
from qsched_scheduler.domain import (
    Change,
    ErrorDetail,
    Event,
    Job,
    JobFilter,
    JobState,
    LogLines,
    NewJob,
    Payload,
    QueuedJob,
    Reason,
    Run,
)


@dataclass(frozen=True)
class SubmitOutcome:
    change: Change
    created: bool  # False when request_id matched an earlier submission
    position: int = 0  # queue position right after the commit (created jobs of submit_many)


@dataclass(frozen=True)
class RunUpdate:
    """What an executor (or the gateway) reported about a run; applied by `RunLog.apply_updates`.

    On a staged lab run (job still QUEUED), `started` makes it the job's running run and a
    terminal outcome ends the job without it ever running; anything else only advances the
    run's executor cursor (no event)."""

    executor_seq: int = 0
    # Config revisions pinned for the run, by type (set once, before the executor starts).
    config_revisions: dict[str, str] = field(default_factory=dict)
    # Provider runs: the gateway's task ids and submission id (set once, when submitted).
    provider_task_ids: list[str] = field(default_factory=list)
    provider_submission_id: str = ""
    started: bool = False
    progress: float | None = None
    message: str = ""
    # Terminal outcome (state is SUCCEEDED, FAILED or CANCELLED when set).
    final_state: JobState | None = None
    error: ErrorDetail | None = None
    data: DataRef | None = None  # the run's data file on its executor
    summary: dict[str, float] = field(default_factory=dict)
    result_json: str = ""  # provider results fetched at the end
    code: CodeProvenance | None = None  # lab runs: the code that ran it (with the terminal outcome)
    # The run yielded at a safe point (its final_state is CANCELLED, its error PREEMPTED): the job
    # goes back to QUEUED at its place (its queue order kept), keeping the error as why, instead of
    # ending. A job whose cancel was asked meanwhile ends CANCELLED as usual.
    requeue: bool = False
    log: LogLines | None = None  # log lines of the run (an event of their own; nothing else changes)


@dataclass(frozen=True)
class Claim:
    """A run staged for a job: its task id, the config revisions pinned for it, and why.

    An empty task id means the job's own (`Job.task_id`, allocated when it was queued): dispatch
    stages with it, so a job's run carries the task id its submitter was given. A claim at submit
    names the id (the new job takes it as its task id)."""

    task_id: str
    config_revisions: Mapping[str, str]
    reason: Reason


@dataclass(frozen=True)
class StageRequest:
    job_id: str
    claim: Claim


class QueueStore(Protocol):
    """What admission and dispatch write: jobs entering, leaving and moving through the queue.
    Every call is one durable transaction."""

    def submit_many(
        self, news: Sequence[NewJob], now: datetime, claims: Mapping[int, Claim] | None = None
    ) -> list[SubmitOutcome]:
        """Queue several jobs in one transaction (group commit: one fsync for all); each created
        outcome carries its queue position after that commit. `claims` (by index in `news`)
        stages runs for some of the new jobs in the same transaction (a job for an idle device).
        Each new job gets its task id (`Job.task_id`): its claim's, else a new UUID."""

    def stage(self, requests: Sequence[StageRequest], now: datetime) -> list[Job]:
        """Stage runs for queued jobs in one transaction: each gets a run (staged, with its task id,
        pinned revisions and reason) while the job stays QUEUED. A job no longer QUEUED, or staged
        already, is skipped; the jobs staged come back (with their staged run). The run's task id
        is the claim's, or the job's own when the claim's is empty (see Claim); the job's task id
        becomes the run's."""

    def unstage(self, task_ids: Sequence[str], now: datetime) -> list[Job]:
        """Take staged runs back: the runs are dropped, their jobs are ordinary queued jobs again
        (in their place: the queue order is kept; the job keeps its task id for its next staging).
        The jobs whose run was dropped."""

    def cancel_queued(
        self, job_id: str, reason: str, now: datetime, failed: ErrorDetail | None = None
    ) -> Change:
        """QUEUED -> CANCELLED (a staged run is dropped), or FAILED with `failed` when it cannot run
        (e.g. the calibration it needs failed). Raises NotFound / FailedPrecondition."""

    def request_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        """Mark a RUNNING job cancel_requested (the executor stops it)."""

    def flag_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        """A cancel asked on a replica that does not dispatch the job's device: an unstaged
        queued job is cancelled at once; a staged or running one is marked cancel_requested for
        the lease holder (Queries.cancel_requests)."""

    def rerun(self, job_id: str, payload: Payload | None, request_id: str, now: datetime) -> Change:
        """A terminal job -> QUEUED at the back of its priority, optionally with a new payload,
        with a new task id for its next run. A repeated non-empty request_id returns the job
        unchanged (the first rerun already queued it)."""

    def delete(self, job_id: str) -> None:
        """Remove a terminal job with its runs and events."""

    def claim_next(
        self,
        device: str,
        task_id: str,
        now: datetime,
        max_running: int = 1,
        expect_job_id: str = "",
        config_revisions: dict[str, str] | None = None,
    ) -> Change | None:
        """Provider devices: the highest priority, oldest queued job -> RUNNING with a new run,
        whose task id is `task_id`, or the job's own (`Job.task_id`) when `task_id` is empty.
        None when nothing is queued or the device already runs `max_running` jobs."""

    def release_claim(self, task_id: str, message: str, now: datetime) -> Change:
        """Undo a provider claim that never reached the gateway: the job is QUEUED again (keeping
        its task id: the next claim submits with the same request id)."""


class RunLog(Protocol):
    """What dispatch records about runs: updates, results and their events."""

    def apply_updates(self, updates: Sequence[tuple[str, RunUpdate]], now: datetime) -> list[Change]:
        """Updates of runs (task id, update), in order, in one transaction: durable (one fsync)
        when any is terminal or records a pin or provider ids, relaxed otherwise (README,
        "What is durable when"). The changes that logged an event, in order."""

    def update_run(self, task_id: str, update: RunUpdate, now: datetime) -> Change | None:
        """`apply_updates` for one update (None if the run is already final or only staged)."""

    def store_result(self, task_id: str, result_json: str, now: datetime) -> None:
        """Cache a run's provider results (also for a finished run: a refetch replaces them)."""


class Queries(Protocol):
    """Reads for the API, the estimates and the engine's start-up."""

    def get(self, job_id: str) -> Job | None:
        """The job with its current run, or None."""

    def job_id_of_task(self, task_id: str) -> str | None:
        """The job a task id belongs to: the job's own task id (also before its run exists) or
        that of any of its runs; None when no job has it."""

    def list_jobs(self, flt: JobFilter, after: tuple[int, ...] | None, limit: int) -> list[Job]:
        """A page in the view's order, strictly after the keyset cursor `after` (see `cursor_of`)."""

    def list_runs(self, job_id: str, after_attempt: int, limit: int) -> list[Run]:
        """The job's runs with attempt > after_attempt, oldest first (NotFound for unknown jobs)."""

    def queue_position(self, job: Job) -> int:
        """1 + queued jobs on the device that run before `job`; 0 unless QUEUED."""

    def queued_count(self, device: str) -> int: ...

    def running_job(self, device: str) -> Job | None: ...

    def recent_run_seconds(self, device: str, limit: int) -> list[float]:
        """Durations of the most recent successful runs on the device."""

    def events_after(self, job_id: str, after_seq: int, limit: int = 1000) -> list[Event]: ...

    def queued_jobs(self, device: str = "") -> list[QueuedJob]:
        """Every QUEUED job (or one device's) in run order per device (the queue index is built
        from them)."""

    def queue_signature(self, device: str) -> tuple[int, ...]:
        """(queued jobs, newest queue order among them, staged jobs, staged or running jobs with a
        cancel requested) of the device (replicas: compared with the queue index)."""

    def cancel_requests(self, device: str) -> list[str]:
        """Staged or running jobs of the device marked cancel_requested (by flag_cancel)."""

    def staged_jobs(self, device: str) -> list[Job]:
        """The device's staged jobs (current_run is the staged run), in run order."""

    def running_jobs(self) -> list[Job]:
        """Every RUNNING job with its current run (for reconciliation after a restart)."""

    def active_devices(self) -> list[str]:
        """Devices with queued or running jobs."""


class JobStore(QueueStore, RunLog, Queries, Protocol):
    """The three stores in one adapter (the SQL store and the memory fake implement all three)."""

    def close(self) -> None: ...


def cursor_of(job: Job, flt: JobFilter) -> tuple[int, ...]:
    """Keyset position of a job in a list view: (rank, -priority, queue_order) for the
    queue (running first), (order,) for history."""
    from qsched_scheduler.domain import ListView

    if flt.view is ListView.QUEUE:
        return (0 if job.state is JobState.RUNNING else 1, -job.priority, job.queue_order)
    return (job.order,)


def queued_end_message(reason: str, failed: ErrorDetail | None) -> str:
    """The event of a queued job ended without running (cancel_queued)."""
    if failed is not None:
        return f"failed: {failed.reason}: {failed.message}"
    return f"cancelled: {reason}" if reason else "cancelled"
