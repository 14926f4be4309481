"""The scheduler's logic: submit, read, cancel and watch jobs; one dispatcher per
lab device. Knows nothing of gRPC; the servicer translates."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from qsched_runtime.pagination import PageTokens
from qsched_runtime.tracing import current_traceparent
from qsched_scheduler import estimates, ids
from qsched_scheduler.bus import EventBus, Subscription
from qsched_scheduler.config_port import ConfigPinner
from qsched_scheduler.dispatcher import DeviceDispatcher, exec_request
from qsched_scheduler.domain import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Change,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    NewJob,
    Payload,
    Run,
)
from qsched_scheduler.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    job_not_found,
)
from qsched_scheduler.executor_port import (
    DataChunk,
    ExecutorRejected,
    ExecutorUnavailable,
    LabExecutor,
    RunNotFound,
)
from qsched_scheduler.pagination import filter_scope, runs_scope
from qsched_scheduler.store.base import JobStore, cursor_of
from qsched_scheduler.validation import DeviceRoute, Submission, validate_submission

T = TypeVar("T")
log = logging.getLogger(__name__)
REPLAY_BATCH = 1000
QUEUE_SNAPSHOT_LIMIT = 1000
RECENT_RUNS = 20


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SubmitResult:
    job: Job
    created: bool


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    kinds: frozenset[JobKind]
    queued: int
    running_job_id: str
    typical_run_seconds: float


@dataclass(frozen=True)
class QueueSnapshot:
    device: str
    jobs: list[Job]


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        executors: Mapping[str, LabExecutor],
        page_key: bytes,
        clock: Callable[[], datetime] = utcnow,
        default_run_seconds: float = estimates.DEFAULT_RUN_SECONDS,
        executor_lost_after_s: float | None = None,
        pinner: ConfigPinner | None = None,
    ):
        self._store = store
        self._clock = clock
        self._tokens = PageTokens(page_key)
        self._default_run_seconds = default_run_seconds
        # One thread runs every store call: SQLite wants a single writer, and it keeps
        # blocking I/O off the event loop.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qsched-store")
        self.bus = EventBus()
        self.devices = {name: DeviceRoute(name, frozenset({JobKind.LAB_EXPERIMENT})) for name in executors}
        self._pinner = pinner
        extra: dict[str, Any] = {"pinner": pinner}
        if executor_lost_after_s is not None:
            extra["lost_after_s"] = executor_lost_after_s
        self._dispatchers = {
            name: DeviceDispatcher(name, executor, store, self._call, self._publish, clock, **extra)
            for name, executor in executors.items()
        }

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        for dispatcher in self._dispatchers.values():
            dispatcher.start()

    async def stop(self) -> None:
        for dispatcher in self._dispatchers.values():
            await dispatcher.stop()
            await dispatcher.executor.close()
        if self._pinner is not None:
            await self._pinner.close()
        self._db.shutdown(wait=True)
        self._store.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, functools.partial(fn, *args))

    def _publish(self, change: Change) -> None:
        self.bus.publish(change)

    # -- commands ------------------------------------------------------------------------------------
    async def submit(self, submission: Submission) -> SubmitResult:
        new = validate_submission(submission, self.devices)
        if new.payload.kind is JobKind.LAB_EXPERIMENT:
            await self._validate_on_device(new)
        new = replace(new, trace_parent=current_traceparent())
        outcome = await self._call(self._store.submit, new, self._clock())
        if not outcome.created:  # a retried request_id: answer with that job as it is now
            return SubmitResult(await self.get(outcome.change.job.job_id), created=False)
        self._publish(outcome.change)
        self._dispatchers[new.device].wake()
        return SubmitResult(await self._with_estimate(outcome.change.job), created=True)

    async def get(self, job_id: str) -> Job:
        self._check_id(job_id)
        job = await self._call(self._store.get, job_id)
        if job is None:
            raise job_not_found(job_id)
        return await self._with_estimate(job)

    async def list_jobs(self, flt: JobFilter, page_size: int, page_token: str) -> tuple[list[Job], str]:
        size = self._page_size(page_size)
        scope = filter_scope(flt)
        after = self._tokens.decode(page_token, scope) if page_token else None
        jobs = await self._call(self._store.list_jobs, flt, after, size + 1)
        next_token = self._tokens.encode(scope, cursor_of(jobs[size - 1], flt)) if len(jobs) > size else ""
        # An unfiltered queue page is a contiguous slice of each device's run order:
        # one COUNT per device gives every position on the page.
        contiguous = flt.view is ListView.QUEUE and not (flt.owner or flt.kind or flt.states)
        return await self._with_estimates(jobs[:size], contiguous), next_token

    async def rerun(
        self, job_id: str, payload: Payload | None = None, payload_bytes: int = 0, request_id: str = ""
    ) -> Job:
        """Queue a finished job again; with `payload`, its next run uses those settings."""
        job = await self.get(job_id)
        if payload is not None:
            checked = Submission(job.device, payload, job.priority, job.owner, payload_bytes=payload_bytes)
            new = validate_submission(checked, self.devices)
            if payload.kind is JobKind.LAB_EXPERIMENT:
                await self._validate_on_device(new)
        change = await self._call(self._store.rerun, job_id, payload, request_id, self._clock())
        if change.previous_state is not change.job.state:  # not a retried request_id
            self._publish(change)
            self._dispatchers[job.device].wake()
        return await self._with_estimate(change.job)

    async def list_runs(self, job_id: str, page_size: int, page_token: str) -> tuple[list[Run], str]:
        self._check_id(job_id)
        size = self._page_size(page_size)
        scope = runs_scope(job_id)
        after = self._tokens.decode(page_token, scope)[0] if page_token else 0
        runs = await self._call(self._store.list_runs, job_id, after, size + 1)
        next_token = self._tokens.encode(scope, (runs[size - 1].attempt,)) if len(runs) > size else ""
        return runs[:size], next_token

    async def fetch_data(self, job_id: str, task_id: str = "") -> AsyncIterator[DataChunk]:
        """A run's data file, from the executor that wrote it."""
        job = await self.get(job_id)
        run = job.current_run
        if task_id:
            runs = await self._call(self._store.list_runs, job_id, 0, MAX_PAGE_SIZE)
            run = next((r for r in runs if r.task_id == task_id), None)
            if run is None:
                raise NotFound(
                    "RUN_NOT_FOUND", f"job {job_id} has no run {task_id}", job_id=job_id, task_id=task_id
                )
        dispatcher = self._dispatchers.get(job.device)
        if run is None or not run.data_file_path or dispatcher is None:
            raise FailedPrecondition("NO_DATA", f"job {job_id} has no data file (yet)", job_id=job_id)
        name = run.data_file_path.rsplit("/", 1)[-1]
        try:
            async for chunk in dispatcher.executor.fetch_data(run.task_id):
                yield replace(chunk, file_name=name)
        except RunNotFound as exc:
            raise NotFound(
                "DATA_NOT_FOUND", f"the executor has no data for {job_id}: {exc}", job_id=job_id
            ) from exc
        except ExecutorUnavailable as exc:
            raise Unavailable(
                "EXECUTOR_UNAVAILABLE", f"the executor of {job.device} cannot be reached"
            ) from exc

    async def cancel(self, job_id: str, reason: str = "") -> Job:
        job = await self.get(job_id)
        if job.state is JobState.QUEUED:
            try:
                change = await self._call(self._store.cancel_queued, job_id, reason, self._clock())
            except FailedPrecondition:  # claimed in the meantime: cancel the run instead
                job = await self.get(job_id)
            else:
                self._publish(change)
                return change.job
        if job.state is JobState.RUNNING:
            change = await self._call(self._store.request_cancel, job_id, reason, self._clock())
            self._publish(change)
            run = change.job.current_run
            dispatcher = self._dispatchers.get(job.device)
            if run is not None and dispatcher is not None:
                await dispatcher.cancel_run(run.task_id, reason or "cancelled by user")
            return change.job
        if job.state is JobState.CANCELLED:
            return job
        raise FailedPrecondition(
            "JOB_ALREADY_FINISHED", f"job {job_id} already {job.state.value.lower()}", job_id=job_id
        )

    async def delete(self, job_id: str) -> None:
        self._check_id(job_id)
        await self._call(self._store.delete, job_id)

    # -- streams -------------------------------------------------------------------------------------
    async def watch(self, job_id: str, after_seq: int = 0) -> AsyncIterator[Job | Event | Change]:
        """Yield the job (snapshot), then every later event in seq order; replay
        events after `after_seq` from the store. Ends when the job is terminal."""
        if after_seq < 0:
            raise InvalidArgument("INVALID_AFTER_SEQ", "after_seq must not be negative")
        self._check_id(job_id)
        with self.bus.subscribe_job(job_id) as sub:  # subscribe first: nothing falls in between
            job = await self.get(job_id)
            yield job
            if job.state.terminal and after_seq == 0:
                return
            last = min(after_seq, job.last_seq) if after_seq else job.last_seq
            async for item in self._replay(job_id, last):
                yield item
                if isinstance(item, Change):
                    return
                last = item.seq
            async for item in self._follow_live(sub, job_id, last):
                yield item
                if item.event.state.terminal:
                    return

    async def _replay(
        self, job_id: str, after: int, before: int | None = None
    ) -> AsyncIterator[Event | Change]:
        """Stored events after `after` (and before `before`); the terminal one comes
        as a Change carrying the final job, and ends the replay."""
        while True:
            events = await self._call(self._store.events_after, job_id, after, REPLAY_BATCH)
            for event in events:
                if before is not None and event.seq >= before:
                    return
                if event.state.terminal:
                    yield Change(job=await self.get(job_id), event=event)
                    return
                yield event
                after = event.seq
            if len(events) < REPLAY_BATCH:
                return

    async def _follow_live(self, sub: Subscription, job_id: str, last: int) -> AsyncIterator[Change | Event]:
        while True:
            if sub.lagged:  # fell behind: the store has everything we dropped
                sub.drain()
                async for item in self._replay(job_id, last):
                    yield item
                    if isinstance(item, Change):
                        return
                    last = item.seq
                continue
            change = await sub.get()
            if change.event.seq <= last:
                continue
            if change.event.seq > last + 1:  # a gap should not happen; heal it from the store
                async for item in self._replay(job_id, last, before=change.event.seq):
                    yield item
                    if isinstance(item, Change):
                        return
                    last = item.seq
            yield change
            last = change.event.seq

    async def watch_queue(self, device: str) -> AsyncIterator[QueueSnapshot | Change]:
        """A snapshot of the device's queue (running first, then run order), then
        every change to a job of that device."""
        if device not in self.devices:
            raise NotFound("DEVICE_NOT_FOUND", f"unknown device {device!r}", device=device)
        flt = JobFilter(view=ListView.QUEUE, device=device)
        with self.bus.subscribe_device(device) as sub:
            while True:
                jobs = await self._call(self._store.list_jobs, flt, None, QUEUE_SNAPSHOT_LIMIT)
                yield QueueSnapshot(device, jobs)
                while not sub.lagged:
                    yield await sub.get()
                sub.drain()  # fell behind: start over with a fresh snapshot

    # -- devices -------------------------------------------------------------------------------------
    async def device_statuses(self) -> list[DeviceStatus]:
        out = []
        for name, route in sorted(self.devices.items()):
            queued = await self._call(self._store.queued_count, name)
            running = await self._call(self._store.running_job, name)
            out.append(
                DeviceStatus(
                    name, route.kinds, queued, running.job_id if running else "", await self._typical(name)
                )
            )
        return out

    # -- helpers ---------------------------------------------------------------------------------------
    async def _validate_on_device(self, new: NewJob) -> None:
        """Ask the device's executor to check the experiment now, so a bad parameter is
        refused at submit rather than after hours in the queue. Best effort: if the
        executor cannot answer, the job is queued and the executor checks it at run time."""
        executor = self._dispatchers[new.device].executor
        try:
            violations = await executor.validate(exec_request("", "", new.owner, new.payload.body))
        except ExecutorRejected as exc:
            if exc.code == "PERMISSION_DENIED":
                raise PermissionDenied(exc.reason, exc.message, device=new.device) from exc
            if exc.code == "INVALID_ARGUMENT":
                raise InvalidArgument(exc.reason, exc.message, device=new.device) from exc
            log.info("submit-time validation skipped on %s: %s", new.device, exc)
            return
        except (ExecutorUnavailable, RunNotFound) as exc:
            log.info("submit-time validation skipped on %s: %s", new.device, exc)
            return
        if violations:
            text = "; ".join(f"{v.field}: {v.description}" for v in violations)
            raise InvalidArgument(
                "INVALID_EXPERIMENT_CONFIG",
                f"the experiment cannot run on {new.device}: {text}",
                field=violations[0].field,
                device=new.device,
            )

    async def _typical(self, device: str) -> float:
        recent = await self._call(self._store.recent_run_seconds, device, RECENT_RUNS)
        return estimates.typical_run_seconds(recent, self._default_run_seconds)

    async def _with_estimate(self, job: Job) -> Job:
        return (await self._with_estimates([job], contiguous=False))[0]

    async def _with_estimates(self, jobs: list[Job], contiguous: bool) -> list[Job]:
        """Fill queue_position and estimated_start_time of the QUEUED jobs."""
        now = self._clock()
        per_device: dict[str, tuple[Job | None, float]] = {}
        last_position: dict[str, int] = {}
        for job in jobs:
            if job.state is not JobState.QUEUED:
                continue
            if job.device not in per_device:
                running = await self._call(self._store.running_job, job.device)
                per_device[job.device] = (running, await self._typical(job.device))
            if contiguous and job.device in last_position:
                position = last_position[job.device] + 1
            else:
                position = await self._call(self._store.queue_position, job)
            last_position[job.device] = position
            running, typical = per_device[job.device]
            job.queue_position = position
            job.estimated_start_time = estimates.estimated_start(now, position, running, typical)
        return jobs

    @staticmethod
    def _page_size(page_size: int) -> int:
        if page_size < 0:
            raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative", page_size=page_size)
        return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)

    @staticmethod
    def _check_id(job_id: str) -> None:
        if not ids.is_job_id(job_id):
            raise InvalidArgument(
                "INVALID_JOB_ID", f"{job_id!r} is not a job id (JOB-YYYYMMDD-NNNNN)", job_id=job_id
            )
