"""The scheduling engine: the collaborators of docs/architecture.md ("The scheduling engine"),
wired by constructors in `Scheduler.build`, and the commands and reads the servicer and the
access desk call. Knows nothing of gRPC.

- admission.py: checks, submit-time validation cache, group commit, claim at insert
- routing.py: devices and their dispatchers
- queue_index.py + policy.py: each device's queue in run order; what runs next, and why
- dispatch/lab.py, dispatch/provider.py: hand runs over, apply what comes back
- watch.py: the change feed, WatchJob, WatchQueue
- results.py: data files and provider results
- estimates.py: positions, estimated starts, typical run times"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qsched_core.clock import utcnow
from qsched_core.execution import PartialData
from qsched_core.health import Problems
from qsched_core.pagination import PageTokens
from qsched_scheduler import estimates, ids
from qsched_scheduler.admission import Admission, SubmitResult
from qsched_scheduler.bus import EventBus
from qsched_scheduler.calibration.gate import CalibrationGate
from qsched_scheduler.calibration.manager import Calibrations
from qsched_scheduler.calibration.state import CalibrationState
from qsched_scheduler.config_port import ConfigPinner
from qsched_scheduler.data_cache import CachedFile, RecentData
from qsched_scheduler.dispatch.lab import (
    EXECUTOR_LOST_AFTER_S,
    ConfigPins,
    LabDispatcher,
    Stores,
    never_yield,
)
from qsched_scheduler.dispatch.provider import ProviderDispatcher
from qsched_scheduler.domain import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Change,
    ErrorDetail,
    Event,
    Job,
    JobFilter,
    JobKind,
    JobState,
    Payload,
    QueuedJob,
    Run,
)
from qsched_scheduler.errors import FailedPrecondition, InvalidArgument, job_not_found, task_not_found
from qsched_scheduler.estimates import Estimates
from qsched_scheduler.executor_port import DataChunk, ExecutorUnavailable, LabExecutor
from qsched_scheduler.experiment_pins import rerun_payload
from qsched_scheduler.gateway_port import ProviderGateway, ProviderStatus
from qsched_scheduler.leases import Leases
from qsched_scheduler.live import LiveFeed
from qsched_scheduler.main_revisions import MainRevisions
from qsched_scheduler.page_budget import fitting, job_bytes, run_bytes
from qsched_scheduler.pagination import filter_scope, runs_scope
from qsched_scheduler.policy import DeviceHold, QueuePolicy, default_policy
from qsched_scheduler.queue_index import QueueIndex
from qsched_scheduler.results import Results, ResultView
from qsched_scheduler.routing import Routes
from qsched_scheduler.store.base import JobStore, cursor_of
from qsched_scheduler.store.leases import ExecutorSeen
from qsched_scheduler.store.thread import StoreThread
from qsched_scheduler.validation import Submission, validate_submission
from qsched_scheduler.watch import ChangeFeed, QueueSnapshot, Watching

log = logging.getLogger(__name__)

__all__ = ["DeviceStatus", "QueueSnapshot", "ResultView", "Scheduler", "SubmitResult", "utcnow"]


@dataclass(frozen=True)
class DeviceStatus:
    name: str
    kinds: frozenset[JobKind]
    queued: int
    running_job_id: str
    typical_run_seconds: float
    # Lab devices: what the dispatching replica sees of the executor; who dispatches it (replicas).
    executor: ExecutorSeen | None = None
    dispatched_by: str = ""


@dataclass(frozen=True)
class CalibrationListing:
    now: datetime
    states: list[tuple[CalibrationState, tuple[str, ...]]]  # each with its dependencies
    definitions_revision_id: str


def _yield_to(calibrations: Calibrations | None) -> Callable[[str], frozenset[str]]:
    """What a device's running job may yield to: the calibration definitions' `yield_to` (read at
    each decision, so a pushed revision applies at once); nothing without them."""
    if calibrations is None:
        return never_yield
    return lambda device: calibrations.definitions.yield_to_on(device)


def no_holds(device: str) -> DeviceHold | None:
    return None


class Scheduler:
    def __init__(
        self,
        store: JobStore,
        thread: StoreThread,
        routes: Routes,
        admission: Admission,
        index: QueueIndex,
        policy: QueuePolicy,
        feed: ChangeFeed,
        watching: Watching,
        results: Results,
        estimates_: Estimates,
        page_key: bytes,
        clock: Callable[[], datetime],
        closers: tuple[Any, ...] = (),
        calibrations: Calibrations | None = None,
        leases: Leases | None = None,
    ):
        self.calibrations = calibrations
        self.leases = leases
        self._discovery: asyncio.Task[None] | None = None
        self._store = store
        self._thread = thread
        self.routes = routes
        self.admission = admission
        self.index = index
        self.policy = policy
        self.feed = feed
        self.bus = feed.bus
        self.watching = watching
        self.results = results
        self.estimates = estimates_
        self._tokens = PageTokens(page_key)
        self._clock = clock
        self._closers = closers

    @classmethod
    def build(
        cls,
        store: JobStore,
        executors: Mapping[str, LabExecutor],
        page_key: bytes,
        *,
        hold_of: Callable[[str], DeviceHold | None] = no_holds,
        mains: MainRevisions | None = None,
        pinner: ConfigPinner | None = None,
        gateway: ProviderGateway | None = None,
        policy: QueuePolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        default_run_seconds: float = estimates.DEFAULT_RUN_SECONDS,
        executor_lost_after_s: float = EXECUTOR_LOST_AFTER_S,
        calibrations: Calibrations | None = None,
        problems: Problems | None = None,
        yielding: Callable[[str], frozenset[str]] | None = None,
        leases: Leases | None = None,
    ) -> Scheduler:
        """The engine, wired: every collaborator gets what it uses in its constructor. `yielding`
        says per device what a running job may be asked to yield to (dispatch.lab.YIELD_TRIGGERS);
        by default the `yield_to` of the calibration definitions, else never."""
        thread = StoreThread()
        stores = Stores(store, store, store, thread)
        policy = policy or default_policy()
        if calibrations is not None:  # the freshness gate (docs/calibration.md)
            policy = QueuePolicy(policy.ordering, [*policy.gates, CalibrationGate(calibrations)])
        index = QueueIndex(policy.key)
        estimates_ = Estimates(store.recent_run_seconds, default_run_seconds, store.running_job)
        feed = ChangeFeed(index, estimates_, EventBus())
        live = LiveFeed()  # partial data of running runs (live output), never kept
        recent_data = RecentData()  # small data files of recently finished runs, never kept
        pins = ConfigPins(mains, pinner)
        labs = {
            name: LabDispatcher(
                name,
                executor,
                stores,
                index,
                policy,
                hold_of,
                pins,
                feed.publish,
                estimates_,
                clock,
                executor_lost_after_s,
                problems,
                yielding or _yield_to(calibrations),
                leases,
                live=live,
                recent_data=recent_data,
            )
            for name, executor in executors.items()
        }

        def provider(device: str) -> ProviderDispatcher:
            assert gateway is not None
            return ProviderDispatcher(
                device,
                gateway,
                stores,
                feed.publish,
                clock,
                lambda: hold_of(device) is not None,
                leases=leases,
            )

        routes = Routes(labs, gateway, provider)
        admission = Admission(routes, stores, estimates_, feed.publish, clock)
        engine: Scheduler

        async def get(job_id: str) -> Job:
            return await engine.get(job_id)

        watching = Watching(feed.bus, store, thread, routes, get, cls._check_id)
        watching.live = live
        results = Results(routes, store, store, thread, get, clock, recent_data)
        engine = cls(
            store,
            thread,
            routes,
            admission,
            index,
            policy,
            feed,
            watching,
            results,
            estimates_,
            page_key,
            clock,
            closers=tuple(c for c in (pinner, gateway) if c is not None),
            calibrations=calibrations,
            leases=leases,
        )
        for lab in labs.values():
            lab.on_remote_cancel = engine._remote_cancel
        if calibrations is not None:
            feed.bus.add_listener(calibrations.observe)
        return engine

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self, dispatch: bool = True) -> None:
        """Load the queue index, then dispatch; `dispatch=False`: a replica that serves the API
        and its watchers only (ServiceConfig.dispatch)."""
        self.index.load(await self._thread.call(self._store.queued_jobs))
        if not dispatch:
            return
        if self.calibrations is not None:  # before dispatching: the gate needs the states
            await self.calibrations.start(self, self._thread.call)
        self.routes.start(await self._thread.call(self._store.active_devices))
        if self.leases is not None:
            self.leases.start()
            if self.routes.gateway is not None:
                self._discovery = asyncio.get_running_loop().create_task(self._discover_providers())

    async def _discover_providers(self) -> None:
        """Replicas: provider devices with work contend for their leases here too, so a device
        whose holder died is taken over even by a replica no submit for it reached."""
        while True:
            await asyncio.sleep(PROVIDER_DISCOVERY_S)
            try:
                for device in await self._thread.call(self._store.active_devices):
                    if not self.routes.is_lab(device):
                        self.routes.provider(device)
            except Exception as exc:
                log.warning("looking for provider devices with work failed: %s", exc)

    async def stop(self) -> None:
        if self._discovery is not None:
            self._discovery.cancel()
        if self.leases is not None:  # given up at once: another replica takes the devices now
            await self.leases.stop()
        if self.calibrations is not None:
            await self.calibrations.stop()
        await self.routes.stop()
        for closer in self._closers:
            await closer.close()
        self._thread.close()
        self._store.close()

    # -- commands ------------------------------------------------------------------------------------
    async def check(self, submission: Submission) -> Any:
        return await self.admission.check(submission)

    async def submit(self, submission: Submission) -> SubmitResult:
        result = await self.admission.submit(submission)
        if not result.created:  # a retried request_id: answer with that job as it is now
            return SubmitResult(await self.get(result.job.job_id), created=False)
        return result

    async def rerun(
        self,
        job_id: str,
        payload: Payload | None = None,
        payload_bytes: int = 0,
        request_id: str = "",
        experiment_revision: str = "",
    ) -> Job:
        """Queue a finished job again; with `payload`, its next run uses those settings. A lab
        job runs the experiment-repository commit it pinned at submit, unless
        `experiment_revision` (or the new payload's) names a revision: that is resolved now."""
        job = await self.get(job_id)
        payload = rerun_payload(job.payload, payload, experiment_revision)
        if payload is not None:
            checked = Submission(job.device, payload, job.priority, job.owner, payload_bytes=payload_bytes)
            new = validate_submission(checked, await self.routes.routes(job.device))
            if payload.kind is JobKind.LAB_EXPERIMENT:
                payload = (await self.admission.validate_on_device(new)).payload
        change = await self._thread.call(self._store.rerun, job_id, payload, request_id, self._clock())
        if change.previous_state is not change.job.state:  # not a retried request_id
            self._queued(change)
        return await self._with_estimate(change.job)

    def _queued(self, change: Change) -> None:
        self.feed.publish(change)
        lab = self.routes.lab(change.job.device)
        if lab is not None:
            lab.queued(change.job)
        else:
            self.routes.wake(change.job.device)

    async def cancel(self, job_id: str, reason: str = "", task_id: str = "") -> Job:
        """Cancel a job; with `task_id`, only while that task is the job's (its current run, or
        the one it waits to start): a handle never cancels a later run than its own."""
        job = await self.get(job_id)
        if task_id and job.task_id != task_id:
            raise FailedPrecondition(
                "TASK_NOT_CURRENT",
                f"task {task_id} of {job_id} is over; the job's task is now {job.task_id}",
                job_id=job_id,
                task_id=task_id,
                current_task_id=job.task_id,
            )
        lab = self.routes.lab(job.device)
        why = reason or "cancelled by user"
        if lab is not None and not lab.dispatches_here() and not job.state.terminal:
            return await self._cancel_elsewhere(job, reason)
        if job.state is JobState.QUEUED:
            if lab is not None and job.staged_task_id:
                try:
                    still = await lab.cancel(job, why)
                except ExecutorUnavailable:
                    still = None  # the next reconcile withdraws it from the executor
                if still is not None:  # it started meanwhile: now a running job being cancelled
                    return await self.cancel(job_id, reason, task_id)
            try:
                change = await self._thread.call(self._store.cancel_queued, job_id, reason, self._clock())
            except FailedPrecondition:  # started in the meantime: cancel the run instead
                job = await self.get(job_id)
            else:
                self.feed.publish(change)
                lab_or = self.routes.lab(job.device)
                if lab_or is not None:
                    lab_or.wake()
                return change.job
        if job.state is JobState.RUNNING:
            try:
                change = await self._thread.call(self._store.request_cancel, job_id, reason, self._clock())
            except FailedPrecondition:  # it ended meanwhile
                return await self.cancel(job_id, reason, task_id)
            self.feed.publish(change)
            run = change.job.current_run
            if lab is not None:
                try:
                    await lab.cancel(change.job, why)
                except ExecutorUnavailable as exc:
                    # The job keeps cancel_requested; if the executor is gone its run is declared lost.
                    log_cancel(job_id, exc)
            elif run is not None and not self.routes.is_lab(job.device):
                await self.routes.provider(job.device).cancel_run(run, why)
            return change.job
        if job.state is JobState.CANCELLED:
            return job
        raise FailedPrecondition(
            "JOB_ALREADY_FINISHED", f"job {job_id} already {job.state.value.lower()}", job_id=job_id
        )

    async def _cancel_elsewhere(self, job: Job, reason: str) -> Job:
        """Another replica dispatches the job's device: a job it has not staged is cancelled here;
        otherwise the job is marked and the holder cancels it on its executor (_remote_cancel)."""
        try:
            change = await self._thread.call(self._store.flag_cancel, job.job_id, reason, self._clock())
        except FailedPrecondition:  # it ended meanwhile
            return await self.cancel(job.job_id, reason)
        self.feed.publish(change)
        return change.job

    async def _remote_cancel(self, job_id: str) -> None:
        """On the lease holder: a cancel asked on another replica (flag_cancel), carried out."""
        job = await self.get(job_id)
        lab = self.routes.lab(job.device)
        if lab is None or not lab.dispatches_here():
            return
        why = "cancelled by user (asked on another replica)"
        if job.state is JobState.QUEUED:
            await self.cancel(job_id, why)
        elif job.state is JobState.RUNNING:
            try:
                await lab.cancel(job, why)
            except ExecutorUnavailable as exc:
                log_cancel(job_id, exc)

    async def fail_queued(self, job_id: str, error: ErrorDetail) -> Job | None:
        """End a QUEUED job FAILED with `error`, without running it (the calibration it needs
        failed); None when it is not queued any more (it started or ended meanwhile)."""
        job = await self.get(job_id)
        if job.state is not JobState.QUEUED:
            return None
        lab = self.routes.lab(job.device)
        if lab is not None and job.staged_task_id:
            try:
                if await lab.cancel(job, error.message) is not None:
                    return None  # it started meanwhile: that run was cancelled instead
            except ExecutorUnavailable:
                pass  # the next reconcile withdraws it from the executor
        try:
            change = await self._thread.call(
                self._store.cancel_queued, job_id, error.message, self._clock(), error
            )
        except FailedPrecondition:
            return None
        self.feed.publish(change)
        if lab is not None:
            lab.wake()
        return change.job

    async def delete(self, job_id: str) -> None:
        self._check_id(job_id)
        await self._thread.call(self._store.delete, job_id)

    def hold_changed(self, device: str) -> None:
        """A device was held (runs staged on its executor that have not started are taken back)
        or resumed (its dispatcher looks at the queue again)."""
        lab = self.routes.lab(device)
        if lab is not None:
            lab.hold_changed()
        else:
            self.routes.wake(device)

    def wake(self, device: str) -> None:
        self.hold_changed(device)

    def reconsider(self, device: str, why: str) -> None:
        """A gate's answer changed for the device (calendar.py): staged runs are picked again."""
        lab = self.routes.lab(device)
        if lab is not None:
            lab.reconsider(why)
        else:
            self.routes.wake(device)

    async def running_on(self, device: str) -> Job | None:
        return await self._thread.call(self._store.running_job, device)

    def take_back(self, device: str, why: str) -> None:
        """Staged runs of a lab device that have not started go back to the queue (a gate's call)."""
        lab = self.routes.lab(device)
        if lab is not None:
            lab.take_back(why)

    def lab_devices(self) -> list[str]:
        """The lab devices this process dispatches (with replicas: those whose lease it holds),
        the ones the calibration manager acts on."""
        return sorted(name for name, lab in self.routes.labs.items() if lab.dispatches_here())

    def queued_on(self, device: str) -> list[QueuedJob]:
        """The device's queued jobs in run order (from the queue index)."""
        return list(self.index.device(device))

    # -- calibration (docs/calibration.md) -------------------------------------------------------------
    async def calibration_listing(self, device: str = "") -> CalibrationListing:
        """Every defined calibration (of one device, or of every lab device) with its state."""
        now = self._clock()
        if self.calibrations is None:
            return CalibrationListing(now, [], "")
        definitions = await self.calibrations.reload_definitions()
        devices = [device] if device else sorted(self.routes.labs)
        states = [s for d in devices for s in self.calibrations.states(d)]
        listed = []
        for state in states:
            cal = definitions.get(state.name)
            listed.append((state, cal.depends_on if cal is not None else ()))
        return CalibrationListing(now, listed, definitions.revision_id)

    async def calibration_states(self, device: str = "") -> list[CalibrationState]:
        return [s for s, _ in (await self.calibration_listing(device)).states]

    async def calibrate(self, device: str, name: str) -> list[str]:
        """Run a calibration now (an operator's call), its stale dependencies first; the names queued."""
        if self.calibrations is None or not self.routes.is_lab(device):
            raise FailedPrecondition(
                "CALIBRATION_UNAVAILABLE", f"device {device!r} has no calibrations", device=device
            )
        queued = await self.calibrations.calibrate(device, name, self._clock())
        return queued

    # -- reads ---------------------------------------------------------------------------------------
    async def job_id_for(self, job_id: str, task_id: str) -> str:
        """The job a request names by its job id or by a task id (the job's own, allocated when it
        was queued, or any of its runs'); both given, they must name the same job."""
        if not task_id:
            return job_id
        if len(task_id) > MAX_TASK_ID_LENGTH:
            raise InvalidArgument(
                "INVALID_TASK_ID", f"a task id has at most {MAX_TASK_ID_LENGTH} characters", task_id=task_id
            )
        found = await self._thread.call(self._store.job_id_of_task, task_id)
        if found is None:
            raise task_not_found(task_id)
        if job_id and job_id != found:
            raise InvalidArgument(
                "TASK_NOT_OF_JOB",
                f"task {task_id} belongs to {found}, not {job_id}",
                job_id=job_id,
                task_id=task_id,
            )
        return found

    async def get(self, job_id: str) -> Job:
        self._check_id(job_id)
        job = await self._thread.call(self._store.get, job_id)
        if job is None:
            raise job_not_found(job_id)
        return await self._with_estimate(job)

    def provider_statuses(self, job: Job) -> list[ProviderStatus]:
        """The latest provider status of each task of the job's active provider run (empty otherwise)."""
        if job.current_run is None or self.routes.is_lab(job.device):
            return []
        dispatcher = self.routes.providers.get(job.device)
        return dispatcher.provider_statuses(job.current_run.task_id) if dispatcher is not None else []

    async def list_jobs(
        self, flt: JobFilter, page_size: int, page_token: str, full: bool = False
    ) -> tuple[list[Job], str]:
        """A page of jobs; `full`: the caller wants the payloads' documents. The page is cut
        where it would pass the byte budget (page_budget)."""
        size = self._page_size(page_size)
        scope = filter_scope(flt)
        after = self._tokens.decode(page_token, scope) if page_token else None
        jobs = await self._thread.call(self._store.list_jobs, flt, after, size + 1)
        size = min(size, fitting(jobs[:size], lambda job: job_bytes(job, full)))
        next_token = self._tokens.encode(scope, cursor_of(jobs[size - 1], flt)) if len(jobs) > size else ""
        return await self._with_estimates(jobs[:size]), next_token

    async def list_runs(
        self, job_id: str, page_size: int, page_token: str, full: bool = False
    ) -> tuple[list[Run], str]:
        self._check_id(job_id)
        size = self._page_size(page_size)
        scope = runs_scope(job_id)
        after = self._tokens.decode(page_token, scope)[0] if page_token else 0
        runs = await self._thread.call(self._store.list_runs, job_id, after, size + 1)
        size = min(size, fitting(runs[:size], lambda run: run_bytes(run, full)))
        next_token = self._tokens.encode(scope, (runs[size - 1].attempt,)) if len(runs) > size else ""
        return runs[:size], next_token

    def fetch_data(self, job_id: str, task_id: str = "") -> AsyncIterator[DataChunk]:
        return self.results.fetch_data(job_id, task_id)

    def finished_data(self, change: Change) -> CachedFile | None:
        """The data file of the run a terminal change succeeded, when it is in memory
        (WatchJobRequest.include_data); None otherwise."""
        return self.results.finished_data(change)

    async def estimate(self, device: str, payload: Payload | None, payload_bytes: int = 0) -> Any:
        return await self.results.estimate(device, payload, payload_bytes)

    async def get_result(self, job_id: str, task_id: str = "", refresh: bool = False) -> ResultView:
        return await self.results.get_result(job_id, task_id, refresh)

    def watch(
        self, job_id: str, after_seq: int = 0, partial_data: bool = False
    ) -> AsyncIterator[Job | Event | Change | PartialData]:
        if partial_data:
            return self.watching.watch_live(job_id, after_seq)
        return self.watching.watch(job_id, after_seq)

    async def job_log(self, job_id: str, task_id: str = "") -> list[Event]:
        """The log events of a job's runs (GetJobLog), in seq order."""
        return await self.watching.log_events(job_id, task_id)

    def watch_queue(self, device: str) -> AsyncIterator[QueueSnapshot | Change]:
        return self.watching.watch_queue(device)

    async def _executors_seen(self) -> dict[str, tuple[ExecutorSeen, str]]:
        """Each lab device's executor as its dispatcher sees it, and the replica that dispatches it:
        from the lease table with replicas (the holder writes it with each renewal), else here."""
        if self.leases is None:
            return {name: (lab.executor_seen, "") for name, lab in self.routes.labs.items()}
        out = {}
        for lease in await self.leases.all():
            if lease.expires_in_s > 0 and lease.device in self.routes.labs:
                out[lease.device] = (lease.executor, lease.holder)
        return out

    async def device_statuses(self) -> list[DeviceStatus]:
        out = []
        seen = await self._executors_seen()
        for name, route in sorted((await self.routes.routes()).items()):
            queued = await self._thread.call(self._store.queued_count, name)
            running = await self._thread.call(self._store.running_job, name)
            if not self.estimates.known(name):
                await self._thread.call(self.estimates.load, name)
            executor, by = seen.get(name, (None, ""))
            out.append(
                DeviceStatus(
                    name,
                    route.kinds,
                    queued,
                    running.job_id if running else "",
                    self.estimates.typical(name),
                    executor,
                    by,
                )
            )
        return out

    # -- estimates -----------------------------------------------------------------------------------
    async def _with_estimate(self, job: Job) -> Job:
        return (await self._with_estimates([job]))[0]

    async def _with_estimates(self, jobs: list[Job]) -> list[Job]:
        """Queue position, estimated start and why it waits, for the QUEUED jobs: positions from
        the queue index (in memory), the running job and typical run times from the store."""
        queued = [job for job in jobs if job.state is JobState.QUEUED]
        if not queued:
            return jobs
        devices = {job.device for job in queued}
        running = await self._thread.call(self._running_and_typical, devices)
        now = self._clock()
        for job in queued:
            position = self.index.device(job.device).position(job.job_id)
            if position == 0:  # not in the index (a race with a change): ask the store
                position = await self._thread.call(self._store.queue_position, job)
            job.queue_position = position
            job.estimated_start_time = estimates.estimated_start(
                now, position, running[job.device], self.estimates.typical(job.device)
            )
            lab = self.routes.lab(job.device)
            entry = self.index.device(job.device).get(job.job_id)
            if entry is not None and job.estimated_start_time is not None:
                # A window its turn would fall into (staged or not: a booking takes staged runs back).
                job.estimated_start_time = self.policy.earliest_start(
                    entry, job.device, job.estimated_start_time
                )
            if lab is not None and entry is not None and not job.staged_task_id:
                job.waiting_reason = self.policy.why_waiting(entry, lab.view())
                # A gate that knows when it lets the job go (a window's end) moves the estimate.
                not_before = job.waiting_reason.details.get("not_before")
                if not_before and job.estimated_start_time is not None:
                    job.estimated_start_time = max(
                        job.estimated_start_time, datetime.fromisoformat(not_before)
                    )
        return jobs

    def _running_and_typical(self, devices: set[str]) -> dict[str, Job | None]:
        out = {}
        for device in devices:
            if not self.estimates.known(device):
                self.estimates.load(device)
            out[device] = self.estimates.running(device)
        return out

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


MAX_TASK_ID_LENGTH = 64  # UUIDs are 36
PROVIDER_DISCOVERY_S = 1.0


def log_cancel(job_id: str, exc: Exception) -> None:
    log.warning("cancel of %s not delivered: %s", job_id, exc)
