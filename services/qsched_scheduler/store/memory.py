"""An in-memory JobStore for unit tests of the scheduler's logic. Same contract
as the SQL store (tests/scheduler/test_store_contract.py runs against both)."""

from __future__ import annotations

import copy
import threading
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime

from qsched_scheduler import ids
from qsched_scheduler.domain import (
    Change,
    ErrorDetail,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    LogLines,
    NewJob,
    Payload,
    QueuedJob,
    Run,
    queued_job,
)
from qsched_scheduler.errors import FailedPrecondition, job_not_found
from qsched_scheduler.store.base import (
    Claim,
    RunUpdate,
    StageRequest,
    SubmitOutcome,
    cursor_of,
    queued_end_message,
)


class MemoryJobStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._runs: dict[str, list[Run]] = defaultdict(list)  # job_id -> runs, oldest first
        self._run_job: dict[str, str] = {}  # task_id -> job_id
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._counters: dict[str, int] = defaultdict(int)
        self._request_ids: dict[str, str] = {}
        self._order = 0
        self._queue_order = 0
        self._rerun_request_ids: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def _copy(self, job: Job) -> Job:
        out = copy.deepcopy(job)
        runs = self._runs.get(job.job_id) or []
        out.current_run = copy.deepcopy(runs[-1]) if runs else None
        out.run_count = len(runs)
        return out

    def _log(
        self,
        job: Job,
        now: datetime,
        message: str,
        progress: float = 0.0,
        task_id: str = "",
        log: LogLines | None = None,
    ) -> Event:
        job.last_seq += 1
        event = Event(job.job_id, job.last_seq, now, job.state, message, progress, task_id, log)
        self._events[job.job_id].append(event)
        return event

    def _require(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        return job

    # -- JobStore ----------------------------------------------------------------------------------
    def submit(self, new: NewJob, now: datetime) -> SubmitOutcome:
        with self._lock:
            if new.request_id and new.request_id in self._request_ids:
                job = self._jobs.get(self._request_ids[new.request_id])
                if job is not None:
                    first = self._events[job.job_id][0]
                    return SubmitOutcome(Change(self._copy(job), first), created=False)
            prefix = ids.day_prefix(now)
            self._counters[prefix] += 1
            self._order += 1
            self._queue_order += 1
            job = Job(
                job_id=ids.format_job_id(prefix, self._counters[prefix]),
                owner=new.owner,
                device=new.device,
                priority=new.priority,
                payload=new.payload,
                state=JobState.QUEUED,
                create_time=now,
                order=self._order,
                queue_order=self._queue_order,
                labels=dict(new.labels),
                trace_parent=new.trace_parent,
                task_id=str(uuid.uuid4()),  # its first run's (a claim at submit replaces it)
            )
            self._jobs[job.job_id] = job
            if new.request_id:
                self._request_ids[new.request_id] = job.job_id
            event = self._log(job, now, "queued")
            return SubmitOutcome(Change(self._copy(job), event), created=True)

    def submit_many(
        self, news: Sequence[NewJob], now: datetime, claims: Mapping[int, Claim] | None = None
    ) -> list[SubmitOutcome]:
        with self._lock:
            out = []
            for i, new in enumerate(news):
                outcome = self.submit(new, now)
                if outcome.created and claims and i in claims:
                    job = self._jobs[outcome.change.job.job_id]
                    self._stage_one(job, claims[i])
                    outcome = SubmitOutcome(Change(self._copy(job), outcome.change.event), True)
                out.append(outcome)
            # Positions after the whole batch (as the SQL store's single commit).
            return [
                SubmitOutcome(o.change, o.created, self.queue_position(o.change.job) if o.created else 0)
                for o in out
            ]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return self._copy(job) if job else None

    def job_id_of_task(self, task_id: str) -> str | None:
        with self._lock:
            if not task_id:
                return None
            if task_id in self._run_job:
                return self._run_job[task_id]
            return next((j.job_id for j in self._jobs.values() if j.task_id == task_id), None)

    def list_jobs(self, flt: JobFilter, after: tuple[int, ...] | None, limit: int) -> list[Job]:
        with self._lock:
            states = flt.states
            if flt.view is ListView.QUEUE:
                states = (states or {JobState.QUEUED, JobState.RUNNING}) & {JobState.QUEUED, JobState.RUNNING}
                if not states:  # only finished states asked for: the queue holds none
                    return []
            rows = [
                job
                for job in self._jobs.values()
                if (not states or job.state in states)
                and (not flt.owner or job.owner == flt.owner)
                and (not flt.device or job.device == flt.device)
                and (flt.kind is None or job.kind is flt.kind)
            ]
            if flt.view is ListView.QUEUE:
                rows.sort(key=lambda j: cursor_of(j, flt))
                if after is not None:
                    rows = [j for j in rows if cursor_of(j, flt) > after]
            else:
                rows.sort(key=lambda j: -j.order)
                if after is not None:
                    rows = [j for j in rows if j.order < after[0]]
            return [self._copy(j) for j in rows[:limit]]

    def queue_position(self, job: Job) -> int:
        if job.state is not JobState.QUEUED:
            return 0
        with self._lock:
            ahead = sum(
                1
                for other in self._jobs.values()
                if other.device == job.device
                and other.state is JobState.QUEUED
                and (
                    other.priority > job.priority
                    or (other.priority == job.priority and other.queue_order < job.queue_order)
                )
            )
            return ahead + 1

    def queued_count(self, device: str) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.device == device and j.state is JobState.QUEUED)

    def running_job(self, device: str) -> Job | None:
        with self._lock:
            for job in self._jobs.values():
                if job.device == device and job.state is JobState.RUNNING:
                    return self._copy(job)
            return None

    def recent_run_seconds(self, device: str, limit: int) -> list[float]:
        with self._lock:
            finished = [
                run
                for job_id, runs in self._runs.items()
                if self._jobs.get(job_id) and self._jobs[job_id].device == device
                for run in runs
                if run.start_time and run.end_time and run.state is JobState.SUCCEEDED
            ]
            finished.sort(key=lambda r: r.end_time, reverse=True)
            return [(r.end_time - r.start_time).total_seconds() for r in finished[:limit]]

    def cancel_queued(
        self, job_id: str, reason: str, now: datetime, failed: ErrorDetail | None = None
    ) -> Change:
        with self._lock:
            job = self._require(job_id)
            if job.state is not JobState.QUEUED:
                raise FailedPrecondition(
                    "JOB_NOT_QUEUED", f"job {job_id} is {job.state.value}, not QUEUED", job_id=job_id
                )
            if job.staged_task_id:  # its staged run never started: it goes
                self._drop_run(job, job.staged_task_id)
            job.state = JobState.FAILED if failed else JobState.CANCELLED
            job.end_time = now
            job.staged_task_id = ""
            job.error = failed or ErrorDetail("CANCELLED", reason or "cancelled while queued")
            event = self._log(job, now, queued_end_message(reason, failed))
            return Change(self._copy(job), event, JobState.QUEUED)

    def request_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        with self._lock:
            job = self._require(job_id)
            if job.state is not JobState.RUNNING:
                raise FailedPrecondition(
                    "JOB_NOT_RUNNING", f"job {job_id} is {job.state.value}, not RUNNING", job_id=job_id
                )
            job.cancel_requested = True
            task_id = self._runs[job_id][-1].task_id
            event = self._log(
                job, now, f"cancel requested: {reason}" if reason else "cancel requested", 0.0, task_id
            )
            return Change(self._copy(job), event, JobState.RUNNING)

    def delete(self, job_id: str) -> None:
        with self._lock:
            job = self._require(job_id)
            if not job.state.terminal:
                raise FailedPrecondition(
                    "JOB_NOT_TERMINAL",
                    f"job {job_id} is {job.state.value}; only finished jobs can be deleted",
                    job_id=job_id,
                )
            del self._jobs[job_id]
            for run in self._runs.pop(job_id, []):
                self._run_job.pop(run.task_id, None)
            self._events.pop(job_id, None)
            for key in [k for k, v in self._request_ids.items() if v == job_id]:
                del self._request_ids[key]

    def claim_next(
        self,
        device: str,
        task_id: str,
        now: datetime,
        max_running: int = 1,
        expect_job_id: str = "",
        config_revisions: dict[str, str] | None = None,
    ) -> Change | None:
        with self._lock:
            running = sum(
                1 for j in self._jobs.values() if j.device == device and j.state is JobState.RUNNING
            )
            if running >= max_running:
                return None
            queued = [
                j
                for j in self._jobs.values()
                if j.device == device and j.state is JobState.QUEUED and not j.staged_task_id
            ]
            if not queued:
                return None
            job = min(queued, key=lambda j: (-j.priority, j.queue_order))
            if expect_job_id and job.job_id != expect_job_id:
                return None
            change = self._start_run(job, task_id or job.task_id or str(uuid.uuid4()), now)
            if config_revisions:
                self._runs[job.job_id][-1].config_revisions = dict(config_revisions)
                change.job.current_run.config_revisions = dict(config_revisions)
            return change

    def _start_run(self, job: Job, task_id: str, now: datetime) -> Change:
        runs = self._runs[job.job_id]
        runs.append(
            Run(
                task_id=task_id,
                attempt=len(runs) + 1,
                state=JobState.RUNNING,
                payload=job.payload,
                job_id=job.job_id,
            )
        )
        self._run_job[task_id] = job.job_id
        job.task_id = task_id
        job.state = JobState.RUNNING
        job.cancel_requested = False
        job.error = None
        event = self._log(job, now, "dispatched to the device", 0.0, task_id)
        return Change(self._copy(job), event, JobState.QUEUED)

    def rerun(self, job_id: str, payload: Payload | None, request_id: str, now: datetime) -> Change:
        with self._lock:
            job = self._require(job_id)
            if request_id and self._rerun_request_ids.get(request_id) == job_id:
                return Change(self._copy(job), self._events[job_id][-1], job.state)
            if not job.state.terminal:
                raise FailedPrecondition(
                    "JOB_NOT_TERMINAL",
                    f"job {job_id} is {job.state.value}; only finished jobs can run again",
                    job_id=job_id,
                )
            previous = job.state
            self._queue_order += 1
            job.queue_order = self._queue_order
            job.state = JobState.QUEUED
            job.start_time = job.end_time = job.error = None
            job.cancel_requested = False
            job.task_id = str(uuid.uuid4())  # the next run's
            if payload is not None:
                job.payload = payload
            if request_id:
                self._rerun_request_ids[request_id] = job_id
            event = self._log(job, now, f"queued again (run {len(self._runs[job_id]) + 1})")
            return Change(self._copy(job), event, previous)

    def list_runs(self, job_id: str, after_attempt: int, limit: int) -> list[Run]:
        with self._lock:
            self._require(job_id)
            runs = [r for r in self._runs.get(job_id, []) if r.attempt > after_attempt]
            return copy.deepcopy(runs[:limit])

    def _stage_one(self, job: Job, claim: Claim) -> None:
        runs = self._runs[job.job_id]
        task_id = claim.task_id or job.task_id or str(uuid.uuid4())
        runs.append(
            Run(
                task_id=task_id,
                attempt=len(runs) + 1,
                state=JobState.QUEUED,
                payload=job.payload,
                job_id=job.job_id,
                config_revisions=dict(claim.config_revisions),
                staged=True,
                reason=claim.reason,
            )
        )
        self._run_job[task_id] = job.job_id
        job.staged_task_id = job.task_id = task_id

    def _drop_run(self, job: Job, task_id: str) -> None:
        runs = self._runs[job.job_id]
        runs[:] = [r for r in runs if r.task_id != task_id]
        self._run_job.pop(task_id, None)

    def stage(self, requests: Sequence[StageRequest], now: datetime) -> list[Job]:
        with self._lock:
            out = []
            for request in requests:
                job = self._jobs.get(request.job_id)
                if job is None or job.state is not JobState.QUEUED or job.staged_task_id:
                    continue
                self._stage_one(job, request.claim)
                out.append(self._copy(job))
            return out

    def unstage(self, task_ids: Sequence[str], now: datetime) -> list[Job]:
        with self._lock:
            out = []
            wanted = set(task_ids)
            for job in self._jobs.values():
                if job.staged_task_id in wanted and job.state is JobState.QUEUED:
                    self._drop_run(job, job.staged_task_id)
                    job.staged_task_id = ""
                    out.append(self._copy(job))
            return out

    def queued_jobs(self, device: str = "") -> list[QueuedJob]:
        with self._lock:
            queued = [
                j
                for j in self._jobs.values()
                if j.state is JobState.QUEUED and (not device or j.device == device)
            ]
            queued.sort(key=lambda j: (j.device, -j.priority, j.queue_order))
            return [queued_job(j) for j in queued]

    def queue_signature(self, device: str) -> tuple[int, ...]:
        with self._lock:
            active = [
                j
                for j in self._jobs.values()
                if j.device == device and j.state in (JobState.QUEUED, JobState.RUNNING)
            ]
            queued = [j for j in active if j.state is JobState.QUEUED]
            return (
                len(queued),
                max((j.queue_order for j in queued), default=0),
                sum(1 for j in active if j.staged_task_id),
                sum(1 for j in active if j.cancel_requested),
            )

    def cancel_requests(self, device: str) -> list[str]:
        with self._lock:
            return [
                j.job_id
                for j in sorted(self._jobs.values(), key=lambda j: j.queue_order)
                if j.device == device
                and j.cancel_requested
                and j.state in (JobState.QUEUED, JobState.RUNNING)
            ]

    def flag_cancel(self, job_id: str, reason: str, now: datetime) -> Change:
        """See SqlJobStore.flag_cancel."""
        with self._lock:
            job = self._require(job_id)
            if job.state is JobState.QUEUED and not job.staged_task_id:
                job.state = JobState.CANCELLED
                job.end_time = now
                job.error = ErrorDetail("CANCELLED", reason or "cancelled while queued")
                event = self._log(job, now, queued_end_message(reason, None))
                return Change(self._copy(job), event, JobState.QUEUED)
            if job.state not in (JobState.QUEUED, JobState.RUNNING):
                raise FailedPrecondition(
                    "JOB_NOT_ACTIVE",
                    f"job {job_id} is {job.state.value}, not queued or running",
                    job_id=job_id,
                )
            job.cancel_requested = True
            message = f"cancel requested: {reason}" if reason else "cancel requested"
            event = self._log(job, now, message, 0.0, job.staged_task_id or job.task_id)
            return Change(self._copy(job), event, job.state)

    def staged_jobs(self, device: str) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.device == device and j.staged_task_id]
            jobs.sort(key=lambda j: (-j.priority, j.queue_order))
            return [self._copy(j) for j in jobs]

    def release_claim(self, task_id: str, message: str, now: datetime) -> Change:
        with self._lock:
            job = self._jobs[self._run_job.pop(task_id)]
            runs = self._runs[job.job_id]
            runs[:] = [r for r in runs if r.task_id != task_id]
            job.state = JobState.QUEUED
            job.start_time = None
            event = self._log(job, now, message)
            return Change(self._copy(job), event, JobState.RUNNING)

    def update_run(self, task_id: str, update: RunUpdate, now: datetime) -> Change | None:
        with self._lock:
            job_id = self._run_job.get(task_id)
            if job_id is None:
                return None
            job = self._jobs[job_id]
            run = next(r for r in self._runs[job_id] if r.task_id == task_id)
            previous = job.state
            if run.state is JobState.QUEUED and run.staged:
                if not update.started and update.final_state is None:
                    run.executor_seq = max(run.executor_seq, update.executor_seq)
                    return None
                if job.state is not JobState.QUEUED or job.staged_task_id != task_id:
                    return None
                run.state, run.staged, job.staged_task_id, job.error = JobState.RUNNING, False, "", None
                if update.started:
                    for other in self._jobs.values():  # ended unseen (see the SQL store)
                        if (
                            other is not job
                            and other.device == job.device
                            and other.state is JobState.RUNNING
                            and other.kind is JobKind.LAB_EXPERIMENT
                        ):
                            message = "the executor started the next run without reporting this one's end"
                            error = ErrorDetail("EXECUTOR_LOST", message)
                            other_run = self._runs[other.job_id][-1]
                            other_run.state, other_run.end_time, other_run.error = JobState.FAILED, now, error
                            other.state, other.end_time, other.error = JobState.FAILED, now, error
                            self._log(other, now, f"failed: {message}")
                    job.state = JobState.RUNNING
            elif run.state is not JobState.RUNNING:
                return None
            run.executor_seq = max(run.executor_seq, update.executor_seq)
            if update.config_revisions:
                run.config_revisions = dict(update.config_revisions)
            if update.provider_task_ids:
                run.provider_task_ids = list(update.provider_task_ids)
            if update.provider_submission_id:
                run.provider_submission_id = update.provider_submission_id
            if update.started and run.start_time is None:
                run.start_time = now
                job.start_time = now
            if update.progress is not None:
                run.progress = update.progress
            if update.final_state is not None:
                run.state = update.final_state
                run.end_time = now
                run.error = update.error
                run.data = update.data
                run.data_file_path = update.data.name if update.data else ""
                run.code = update.code
                run.summary = dict(update.summary)
                if update.result_json:
                    run.result_json, run.result_time = update.result_json, now
                if update.final_state is JobState.SUCCEEDED:
                    run.progress = 1.0
                if update.requeue and not job.cancel_requested:  # yielded: back to its place
                    job.state, job.start_time, job.end_time, job.error = (
                        JobState.QUEUED,
                        None,
                        None,
                        update.error,
                    )
                    job.task_id = str(uuid.uuid4())  # the next run's (as after a rerun)
                else:
                    job.state = update.final_state
                    job.end_time = now
                    job.error = update.error
                job.cancel_requested = False
            event = self._log(job, now, update.message, run.progress, task_id, update.log)
            return Change(self._copy(job), event, previous)

    def apply_updates(self, updates: Sequence[tuple[str, RunUpdate]], now: datetime) -> list[Change]:
        with self._lock:
            changes = [self.update_run(task_id, update, now) for task_id, update in updates]
            return [change for change in changes if change is not None]

    def store_result(self, task_id: str, result_json: str, now: datetime) -> None:
        with self._lock:
            job_id = self._run_job[task_id]
            run = next(r for r in self._runs[job_id] if r.task_id == task_id)
            run.result_json, run.result_time = result_json, now

    def events_after(self, job_id: str, after_seq: int, limit: int = 1000) -> list[Event]:
        with self._lock:
            return [e for e in self._events.get(job_id, []) if e.seq > after_seq][:limit]

    def active_devices(self) -> list[str]:
        with self._lock:
            active = {JobState.QUEUED, JobState.RUNNING}
            return sorted({j.device for j in self._jobs.values() if j.state in active})

    def running_jobs(self) -> list[Job]:
        with self._lock:
            return [self._copy(j) for j in self._jobs.values() if j.state is JobState.RUNNING]

    def close(self) -> None:
        pass
