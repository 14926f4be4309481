"""The scheduler's logic: submit, read, cancel and watch jobs; one dispatcher per
lab device. Knows nothing of gRPC; the servicer translates."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from qsched_core.clock import utcnow
from qsched_core.pagination import PageTokens
from qsched_core.tracing import current_traceparent
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
from qsched_scheduler.gateway_port import (
    GatewayRejected,
    GatewayUnavailable,
    ProviderGateway,
    ProviderStatus,
    Submitted,
)
from qsched_scheduler.group_commit import GroupCommit
from qsched_scheduler.page_budget import fitting, job_bytes, run_bytes
from qsched_scheduler.pagination import filter_scope, runs_scope
from qsched_scheduler.provider_checks import ProviderChecks
from qsched_scheduler.provider_dispatcher import ProviderDispatcher
from qsched_scheduler.store.base import JobStore, SubmitOutcome, cursor_of
from qsched_scheduler.validation import DeviceRoute, Submission, validate_submission

T = TypeVar("T")
PROVIDER_KINDS = frozenset({JobKind.CIRCUIT, JobKind.BENCHMARK})
PROVIDER_DEVICES_TTL_S = 30.0
log = logging.getLogger(__name__)
REPLAY_BATCH = 1000
QUEUE_SNAPSHOT_LIMIT = 1000
RECENT_RUNS = 20
VALIDATION_CACHE_S = 1.0  # how long "nothing wrong" stands for an identical submission
VALIDATION_CACHE_SIZE = 4096


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
class ResultView:
    """A provider run's results (JSON from the gateway) and where they came from."""

    job_id: str
    task_id: str
    result_json: str
    cached: bool
    fetch_time: datetime | None


def _from_gateway(exc: Exception) -> Exception:
    if isinstance(exc, GatewayUnavailable):
        return Unavailable("GATEWAY_UNAVAILABLE", f"the provider gateway cannot be reached: {exc}")
    assert isinstance(exc, GatewayRejected)
    kinds = {
        "INVALID_ARGUMENT": InvalidArgument,
        "NOT_FOUND": NotFound,
        "PERMISSION_DENIED": PermissionDenied,
    }
    return kinds.get(exc.code, FailedPrecondition)(exc.reason, exc.message)


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
        gateway: ProviderGateway | None = None,
    ):
        self._store = store
        self._clock = clock
        self._tokens = PageTokens(page_key)
        self._default_run_seconds = default_run_seconds
        # One thread runs every store call: SQLite wants a single writer, and it keeps
        # blocking I/O off the event loop.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qsched-store")
        self.bus = EventBus()
        self._submits: GroupCommit[NewJob, SubmitOutcome] = GroupCommit(self._write_submissions)
        # The running job per device for submit's estimates (store thread), until a change
        # starts or ends a run there.
        self._running_jobs: dict[str, Job | None] = {}
        self._running_changes: dict[str, int] = {}  # so a read racing a change is not kept
        # Submit-time validation answers that found nothing wrong, by request, for a moment:
        # identical submissions in a burst ask the executor once (it checks again at run time).
        self._validated: dict[tuple[str, ...], float] = {}
        self._validating: dict[tuple[str, ...], asyncio.Future[None]] = {}
        self._lab_routes = {
            name: DeviceRoute(name, frozenset({JobKind.LAB_EXPERIMENT})) for name in executors
        }
        # Provider devices come from the gateway's device list, refreshed when stale or
        # when a submit names a device not in it.
        self._gateway = gateway
        self._provider_checks = ProviderChecks(gateway) if gateway is not None else None
        self._provider_routes: dict[str, DeviceRoute] = {}
        self._provider_routes_at = -math.inf
        self._started = False
        self._typical_seconds: dict[str, float] = {}  # per device, until its next successful run
        self._pinner = pinner
        extra: dict[str, Any] = {"pinner": pinner}
        if executor_lost_after_s is not None:
            extra["lost_after_s"] = executor_lost_after_s
        self._dispatchers: dict[str, DeviceDispatcher | ProviderDispatcher] = {
            name: DeviceDispatcher(name, executor, store, self._call, self._publish, clock, **extra)
            for name, executor in executors.items()
        }
        # Whether a device's queue is held (set by the server to holds.DeviceHolds.held).
        self.is_held: Callable[[str], bool] = lambda device: False
        for name, dispatcher in self._dispatchers.items():
            dispatcher.held = functools.partial(self._held, name)

    @property
    def devices(self) -> dict[str, DeviceRoute]:
        return {**self._provider_routes, **self._lab_routes}

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._started = True
        for dispatcher in self._dispatchers.values():
            dispatcher.start()
        # Provider devices with work left from before a restart get their dispatcher now.
        for device in await self._call(self._store.active_devices):
            if device not in self._lab_routes and self._gateway is not None:
                self._dispatcher(device)

    async def stop(self) -> None:
        for dispatcher in self._dispatchers.values():
            await dispatcher.stop()
            if isinstance(dispatcher, DeviceDispatcher):
                await dispatcher.executor.close()
        for client in (self._pinner, self._gateway):
            if client is not None:
                await client.close()
        self._db.shutdown(wait=True)
        self._store.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, functools.partial(fn, *args))

    def _publish(self, change: Change) -> None:
        if change.event.state is JobState.SUCCEEDED:  # a run ended: the device's typical run changed
            self._typical_seconds.pop(change.job.device, None)
        if JobState.RUNNING in (change.previous_state, change.job.state):  # for submit's estimates
            self._running_jobs.pop(change.job.device, None)
            self._running_changes[change.job.device] = self._running_changes.get(change.job.device, 0) + 1
        self.bus.publish(change)

    # -- commands ------------------------------------------------------------------------------------
    async def check(self, submission: Submission) -> NewJob:
        """Everything submit checks before it queues a job (SubmitJobs checks every entry
        before it queues any)."""
        new = validate_submission(submission, await self._routes(submission.device))
        if new.payload.kind is JobKind.LAB_EXPERIMENT:
            await self._validate_on_device(new)
        elif self._provider_checks is not None:  # benchmark configs: the gateway checks them now
            await self._provider_checks.check(new)
        return new

    async def submit(self, submission: Submission) -> SubmitResult:
        new = await self.check(submission)
        new = replace(new, trace_parent=current_traceparent())
        # Group commit: durable (committed) before this returns, in one transaction with
        # whatever other submissions arrived meanwhile; the estimate comes with it.
        outcome = await self._submits.submit(new)
        return await self._submitted(outcome)

    async def _submitted(self, outcome: SubmitOutcome) -> SubmitResult:
        if not outcome.created:  # a retried request_id: answer with that job as it is now
            return SubmitResult(await self.get(outcome.change.job.job_id), created=False)
        self._publish(outcome.change)
        dispatcher = self._dispatcher(outcome.change.job.device)
        if isinstance(dispatcher, DeviceDispatcher):  # jobs handed over ahead may make way for it
            dispatcher.queued(outcome.change.job.priority)
        dispatcher.wake()
        return SubmitResult(outcome.change.job, created=True)

    async def _write_submissions(self, news: list[NewJob]) -> list[SubmitOutcome]:
        return await self._call(self._submit_batch, news)

    def _submit_batch(self, news: list[NewJob]) -> list[SubmitOutcome]:
        """Store thread: one transaction for the batch, then the estimates of the new jobs
        (their positions come from the store's queue counters, not from counting the queue)."""
        outcomes = self._store.submit_many(news, self._clock())
        now = self._clock()
        running: dict[str, tuple[Job | None, float]] = {}
        for outcome in outcomes:
            job = outcome.change.job
            if not outcome.created or job.state is not JobState.QUEUED:
                continue
            if job.device not in running:
                current = self._running_jobs.get(job.device, False)
                if current is False:
                    seen = self._running_changes.get(job.device, 0)
                    current = self._store.running_job(job.device)
                    if self._running_changes.get(job.device, 0) == seen:
                        self._running_jobs[job.device] = current
                running[job.device] = (current, self._typical_now(job.device))
            current, typical = running[job.device]
            job.queue_position = outcome.position
            job.estimated_start_time = estimates.estimated_start(now, outcome.position, current, typical)
        return outcomes

    async def get(self, job_id: str) -> Job:
        self._check_id(job_id)
        job = await self._call(self._store.get, job_id)
        if job is None:
            raise job_not_found(job_id)
        return await self._with_estimate(job)

    def provider_statuses(self, job: Job) -> list[ProviderStatus]:
        """The latest provider status of each task of the job's active provider run (empty otherwise)."""
        dispatcher = self._dispatchers.get(job.device)
        if job.current_run is None or not isinstance(dispatcher, ProviderDispatcher):
            return []
        return dispatcher.provider_statuses(job.current_run.task_id)

    async def list_jobs(
        self, flt: JobFilter, page_size: int, page_token: str, full: bool = False
    ) -> tuple[list[Job], str]:
        """A page of jobs; `full`: the caller wants the payloads' documents (the page is then
        cut where it would pass the byte budget)."""
        size = self._page_size(page_size)
        scope = filter_scope(flt)
        after = self._tokens.decode(page_token, scope) if page_token else None
        jobs = await self._call(self._store.list_jobs, flt, after, size + 1)
        size = min(size, fitting(jobs[:size], lambda job: job_bytes(job, full)))
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
            new = validate_submission(checked, await self._routes(job.device))
            if payload.kind is JobKind.LAB_EXPERIMENT:
                await self._validate_on_device(new)
        change = await self._call(self._store.rerun, job_id, payload, request_id, self._clock())
        if change.previous_state is not change.job.state:  # not a retried request_id
            self._publish(change)
            dispatcher = self._dispatcher(job.device)
            if isinstance(dispatcher, DeviceDispatcher):
                dispatcher.queued(change.job.priority)
            dispatcher.wake()
        return await self._with_estimate(change.job)

    async def list_runs(
        self, job_id: str, page_size: int, page_token: str, full: bool = False
    ) -> tuple[list[Run], str]:
        self._check_id(job_id)
        size = self._page_size(page_size)
        scope = runs_scope(job_id)
        after = self._tokens.decode(page_token, scope)[0] if page_token else 0
        runs = await self._call(self._store.list_runs, job_id, after, size + 1)
        size = min(size, fitting(runs[:size], lambda run: run_bytes(run, full)))
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
        if run is None or not run.data_file_path or not isinstance(dispatcher, DeviceDispatcher):
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
                dispatcher = self._dispatchers.get(job.device)
                if isinstance(dispatcher, DeviceDispatcher):  # handed to the executor ahead of time?
                    dispatcher.cancel_staged(job_id)
                return change.job
        if job.state is JobState.RUNNING:
            try:
                change = await self._call(self._store.request_cancel, job_id, reason, self._clock())
            except FailedPrecondition:  # its claim was undone meanwhile (back in the queue): again
                return await self.cancel(job_id, reason)
            self._publish(change)
            run = change.job.current_run
            dispatcher = self._dispatchers.get(job.device)
            if run is not None and dispatcher is not None:
                await dispatcher.cancel_run(run, reason or "cancelled by user")
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
        if device not in await self._routes(device):
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
        for name, route in sorted((await self._routes()).items()):
            queued = await self._call(self._store.queued_count, name)
            running = await self._call(self._store.running_job, name)
            out.append(
                DeviceStatus(
                    name, route.kinds, queued, running.job_id if running else "", await self._typical(name)
                )
            )
        return out

    # -- provider devices --------------------------------------------------------------------------------
    async def estimate(self, device: str, payload: Payload | None, payload_bytes: int = 0) -> Any:
        """The gateway's estimate for a circuit or benchmark payload on a provider device."""
        routes = await self._routes(device)
        if device in self._lab_routes:
            raise InvalidArgument(
                "KIND_NOT_SUPPORTED", f"{device} is a lab device: nothing to estimate", device=device
            )
        validate_submission(Submission(device, payload, 0, "estimate", payload_bytes=payload_bytes), routes)
        assert self._gateway is not None and payload is not None
        try:
            return await self._gateway.estimate(device, payload)
        except (GatewayUnavailable, GatewayRejected) as exc:
            raise _from_gateway(exc) from exc

    async def get_result(self, job_id: str, task_id: str = "", refresh: bool = False) -> ResultView:
        """A provider run's results: from the cache, or fetched through the gateway (and cached)."""
        job = await self.get(job_id)
        if job.kind is JobKind.LAB_EXPERIMENT:
            raise FailedPrecondition(
                "NOT_A_PROVIDER_JOB",
                f"{job_id} is a lab job: its data is a file (FetchJobData)",
                job_id=job_id,
            )
        run = job.current_run
        if task_id:
            runs = await self._call(self._store.list_runs, job_id, 0, MAX_PAGE_SIZE)
            run = next((r for r in runs if r.task_id == task_id), None)
            if run is None:
                raise NotFound(
                    "RUN_NOT_FOUND", f"job {job_id} has no run {task_id}", job_id=job_id, task_id=task_id
                )
        if run is None or run.state not in (JobState.SUCCEEDED, JobState.FAILED):
            raise FailedPrecondition(
                "RESULT_NOT_READY", f"job {job_id} has no finished run yet", job_id=job_id
            )
        if run.result_json and not refresh:
            return ResultView(job_id, run.task_id, run.result_json, cached=True, fetch_time=run.result_time)
        if self._gateway is None or not (run.provider_task_ids or run.provider_submission_id):
            raise FailedPrecondition(
                "RESULT_NOT_READY", f"job {job_id} never reached the provider", job_id=job_id
            )
        submitted = Submitted(tuple(run.provider_task_ids), run.provider_submission_id)
        try:
            results = await self._gateway.fetch_result(job.device, submitted)
        except (GatewayUnavailable, GatewayRejected) as exc:
            raise _from_gateway(exc) from exc
        now = self._clock()
        await self._call(self._store.store_result, run.task_id, results, now)
        return ResultView(job_id, run.task_id, results, cached=False, fetch_time=now)

    async def _routes(self, device: str = "") -> dict[str, DeviceRoute]:
        """The devices known so far, after asking the gateway about `device` if it is new;
        without `device`, every device (the gateway's full list, refreshed when stale)."""
        if self._gateway is None or device in self._lab_routes or device in self._provider_routes:
            return self.devices
        now = asyncio.get_running_loop().time()
        if device:  # one name: a quick lookup, not the whole list
            try:
                found = await self._gateway.devices((device,))
            except GatewayUnavailable as exc:
                raise Unavailable(
                    "GATEWAY_UNAVAILABLE", f"the provider gateway cannot be reached to look up {device!r}"
                ) from exc
            except GatewayRejected as exc:
                log.warning("the gateway could not look up %s: %s", device, exc)
                found = []
            self._provider_routes.update({d.name: DeviceRoute(d.name, PROVIDER_KINDS) for d in found})
        elif now - self._provider_routes_at > PROVIDER_DEVICES_TTL_S:
            try:
                found = await self._gateway.devices()
            except (GatewayUnavailable, GatewayRejected) as exc:
                log.warning("the gateway did not list its devices: %s", exc)
            else:
                self._provider_routes = {d.name: DeviceRoute(d.name, PROVIDER_KINDS) for d in found}
                self._provider_routes_at = now
        return self.devices

    def _held(self, device: str) -> bool:
        return self.is_held(device)

    def held_now(self, device: str) -> None:
        """The device's queue was just held (PauseDevice / DrainDevice): jobs handed to its
        executor ahead of time that have not started are taken back (they stay queued)."""
        dispatcher = self._dispatchers.get(device)
        if isinstance(dispatcher, DeviceDispatcher):
            dispatcher.take_back_all()

    def wake(self, device: str) -> None:
        """Let the device's dispatcher look at its queue again (e.g. after ResumeDevice)."""
        dispatcher = self._dispatchers.get(device)
        if dispatcher is not None:
            dispatcher.wake()

    def _dispatcher(self, device: str) -> DeviceDispatcher | ProviderDispatcher:
        """The device's dispatcher; a provider device gets one on first use."""
        dispatcher = self._dispatchers.get(device)
        if dispatcher is None:
            assert self._gateway is not None
            dispatcher = ProviderDispatcher(
                device, self._gateway, self._store, self._call, self._publish, self._clock
            )
            dispatcher.held = functools.partial(self._held, device)
            self._dispatchers[device] = dispatcher
            if self._started:
                dispatcher.start()
        return dispatcher

    # -- helpers ---------------------------------------------------------------------------------------
    async def _validate_on_device(self, new: NewJob) -> None:
        """Ask the device's executor to check the experiment now, so a bad parameter is
        refused at submit rather than after hours in the queue. Best effort: if the
        executor cannot answer, the job is queued and the executor checks it at run time."""
        body = new.payload.body
        key = (
            new.device,
            body.get("experiment_module", ""),
            body.get("experiment_class", ""),
            body.get("expt_config_json", "") or "{}",
        )
        loop = asyncio.get_running_loop()
        if self._validated.get(key, -math.inf) > loop.time():
            return
        running = self._validating.get(key)
        if running is not None:  # the same check is under way: share its answer
            await asyncio.shield(running)
            return
        future: asyncio.Future[None] = loop.create_future()
        self._validating[key] = future
        try:
            await self._ask_device(new)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: sharers re-raise it, nobody else has to
            raise
        else:
            future.set_result(None)
            if len(self._validated) > VALIDATION_CACHE_SIZE:
                self._validated.clear()
            self._validated[key] = loop.time() + VALIDATION_CACHE_S
        finally:
            del self._validating[key]

    async def _ask_device(self, new: NewJob) -> None:
        dispatcher = self._dispatchers[new.device]
        assert isinstance(dispatcher, DeviceDispatcher)
        executor = dispatcher.executor
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
        return await self._call(self._typical_now, device)

    def _typical_now(self, device: str) -> float:
        """The device's typical run time (store thread); cached until a run on it succeeds."""
        typical = self._typical_seconds.get(device)
        if typical is None:
            recent = self._store.recent_run_seconds(device, RECENT_RUNS)
            typical = self._typical_seconds[device] = estimates.typical_run_seconds(
                recent, self._default_run_seconds
            )
        return typical

    async def _with_estimate(self, job: Job) -> Job:
        return (await self._with_estimates([job], contiguous=False))[0]

    async def _with_estimates(self, jobs: list[Job], contiguous: bool) -> list[Job]:
        """Fill queue_position and estimated_start_time of the QUEUED jobs (one trip to the
        store thread for all of them)."""
        if any(job.state is JobState.QUEUED for job in jobs):
            await self._call(self._fill_estimates, jobs, contiguous, self._clock())
        return jobs

    def _fill_estimates(self, jobs: list[Job], contiguous: bool, now: datetime) -> None:
        per_device: dict[str, tuple[Job | None, float]] = {}
        last_position: dict[str, int] = {}
        for job in jobs:
            if job.state is not JobState.QUEUED:
                continue
            if job.device not in per_device:
                per_device[job.device] = (self._store.running_job(job.device), self._typical_now(job.device))
            if contiguous and job.device in last_position:
                position = last_position[job.device] + 1
            else:
                position = self._store.queue_position(job)
            last_position[job.device] = position
            running, typical = per_device[job.device]
            job.queue_position = position
            job.estimated_start_time = estimates.estimated_start(now, position, running, typical)

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
