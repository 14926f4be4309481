"""The storage interface of the scheduler.

Every mutating call is one transaction: it is durable when the call returns,
and it returns the events it logged so the caller can publish them afterwards.
Implementations are synchronous; the scheduler runs them off the event loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from qsched_scheduler.domain import Change, ErrorDetail, Event, Job, JobFilter, JobState, NewJob, Payload, Run


@dataclass(frozen=True)
class SubmitOutcome:
    change: Change
    created: bool  # False when request_id matched an earlier submission
    position: int = 0  # queue position right after the commit (created jobs of submit_many)


@dataclass(frozen=True)
class RunUpdate:
    """What the executor reported about a run; applied in `update_run`."""

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
    data_file_path: str = ""
    summary: dict[str, float] = field(default_factory=dict)
    result_json: str = ""  # provider results fetched at the end


class JobStore(Protocol):
    def submit(self, new: NewJob, now: datetime) -> SubmitOutcome:
        """Allocate an id and queue the job; with a known request_id return the first job."""

    def submit_many(self, news: list[NewJob], now: datetime) -> list[SubmitOutcome]:
        """`submit` for several jobs in one transaction (group commit: one commit for all);
        each created outcome carries its queue position after that commit."""

    def get(self, job_id: str) -> Job | None:
        """The job with its current run, or None."""

    def list_jobs(self, flt: JobFilter, after: tuple[int, ...] | None, limit: int) -> list[Job]:
        """A page in the view's order, strictly after the keyset cursor `after` (see `cursor_of`)."""

    def queue_position(self, job: Job) -> int:
        """1 + queued jobs on the device that run before `job`; 0 unless QUEUED."""

    def queued_count(self, device: str) -> int: ...

    def running_job(self, device: str) -> Job | None: ...

    def recent_run_seconds(self, device: str, limit: int) -> list[float]:
        """Durations of the most recent finished runs on the device."""

    def cancel_queued(self, job_id: str, reason: str, now: datetime) -> Change:
        """QUEUED -> CANCELLED. Raises NotFound / FailedPrecondition."""

    def request_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        """Mark a RUNNING job cancel_requested (the executor stops it)."""

    def delete(self, job_id: str) -> None:
        """Remove a terminal job with its runs and events."""

    def next_claimable(self, device: str, max_running: int = 1) -> Job | None:
        """The job claim_next would take now, without claiming it (None: nothing, or busy)."""

    def claim_next(
        self,
        device: str,
        task_id: str,
        now: datetime,
        max_running: int = 1,
        expect_job_id: str = "",
        config_revisions: dict[str, str] | None = None,
    ) -> Change | None:
        """Highest priority, oldest queued (and not staged) job on the device -> RUNNING with a
        new run that records `config_revisions`. None when nothing is queued, the device already
        runs `max_running` jobs (lab devices: 1, which the database also enforces), or
        `expect_job_id` is given and is no longer the one to take."""

    def rerun(self, job_id: str, payload: Payload | None, request_id: str, now: datetime) -> Change:
        """A terminal job -> QUEUED at the back of its priority, optionally with a new payload.
        A repeated non-empty request_id returns the job unchanged (the first rerun already queued it)."""

    def list_runs(self, job_id: str, after_attempt: int, limit: int) -> list[Run]:
        """The job's runs with attempt > after_attempt, oldest first (NotFound for unknown jobs)."""

    def stage_next(self, device: str, task_id: str, limit: int = 1) -> Job | None:
        """Pipelined dispatch: mark the next queued, not yet staged job of the device (run
        order) as handed to the executor under `task_id`; it stays QUEUED. None when nothing
        is left or `limit` jobs are staged already. claim_next skips staged jobs."""

    def start_staged(
        self, task_id: str, now: datetime, config_revisions: dict[str, str] | None = None
    ) -> Change | None:
        """The executor started a staged run: QUEUED -> RUNNING with that run (as claim_next),
        which records `config_revisions`. None, and the staging dropped, when the job is no
        longer QUEUED. May be committed without an fsync (the staging itself was durable)."""

    def unstage(self, task_id: str) -> None:
        """Drop a staging: the job is an ordinary queued job again."""

    def staged_jobs(self, device: str) -> list[Job]:
        """The device's staged jobs, in run order."""

    def release_claim(self, task_id: str, message: str, now: datetime) -> Change:
        """Undo a claim the executor never accepted: the run is dropped, the job is QUEUED again."""

    def update_run(self, task_id: str, update: RunUpdate, now: datetime) -> Change | None:
        """Apply an executor update to a RUNNING run (None if the run is already final)."""

    def update_runs(self, task_id: str, updates: list[RunUpdate], now: datetime) -> list[Change]:
        """`update_run` for several updates in one transaction; the changes that applied."""

    def store_result(self, task_id: str, result_json: str, now: datetime) -> None:
        """Cache a run's provider results (also for a finished run: a refetch replaces them)."""

    def events_after(self, job_id: str, after_seq: int, limit: int = 1000) -> list[Event]: ...

    def active_devices(self) -> list[str]:
        """Devices with queued or running jobs."""

    def running_jobs(self) -> list[Job]:
        """Every RUNNING job with its current run (for reconciliation after a restart)."""

    def close(self) -> None: ...


def cursor_of(job: Job, flt: JobFilter) -> tuple[int, ...]:
    """Keyset position of a job in a list view: (rank, -priority, queue_order) for the
    queue (running first), (order,) for history."""
    from qsched_scheduler.domain import ListView

    if flt.view is ListView.QUEUE:
        return (0 if job.state is JobState.RUNNING else 1, -job.priority, job.queue_order)
    return (job.order,)
