"""Results and data: a lab run's data file from the executor that wrote it (by its DataRef
name), a provider run's results from the cache or through the gateway (then cached), and the
gateway's estimates for provider payloads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from qsched_scheduler.data_cache import CachedFile, RecentData
from qsched_scheduler.domain import MAX_PAGE_SIZE, Change, Job, JobKind, JobState, Payload, Run
from qsched_scheduler.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from qsched_scheduler.executor_port import DataChunk, ExecutorRejected, ExecutorUnavailable, RunNotFound
from qsched_scheduler.gateway_port import GatewayRejected, GatewayUnavailable, Submitted
from qsched_scheduler.routing import Routes
from qsched_scheduler.store.base import Queries, RunLog
from qsched_scheduler.store.thread import StoreThread
from qsched_scheduler.validation import Submission, validate_submission


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


class Results:
    def __init__(
        self,
        routes: Routes,
        queries: Queries,
        run_log: RunLog,
        thread: StoreThread,
        get: Callable[[str], Awaitable[Job]],
        clock: Callable[[], datetime],
        recent_data: RecentData | None = None,
    ):
        self.recent_data = recent_data if recent_data is not None else RecentData()
        self._routes = routes
        self._queries = queries
        self._run_log = run_log
        self._thread = thread
        self._get = get
        self._clock = clock

    async def _run_of(self, job: Job, task_id: str) -> Run | None:
        if not task_id or (job.current_run is not None and job.current_run.task_id == task_id):
            return job.current_run  # the job's own run: no list of its runs to read
        runs = await self._thread.call(self._queries.list_runs, job.job_id, 0, MAX_PAGE_SIZE)
        run = next((r for r in runs if r.task_id == task_id), None)
        if run is None:
            raise NotFound(
                "RUN_NOT_FOUND", f"job {job.job_id} has no run {task_id}", job_id=job.job_id, task_id=task_id
            )
        return run

    async def fetch_data(self, job_id: str, task_id: str = "") -> AsyncIterator[DataChunk]:
        """A run's data file, from the executor that wrote it."""
        job = await self._get(job_id)
        run = await self._run_of(job, task_id)
        lab = self._routes.lab(job.device)
        if run is None or run.data is None or lab is None:
            raise FailedPrecondition("NO_DATA", f"job {job_id} has no data file (yet)", job_id=job_id)
        name = run.data.name.rsplit("/", 1)[-1]
        cached = self.recent_data.get(run.task_id, run.data.name)
        if cached is not None:  # a small file that came with the run's result: no executor call
            yield DataChunk(0, cached.data, len(cached.data), cached.sha256, name)
            return
        try:
            async for chunk in lab.executor.fetch_data(run.task_id, run.data.name):
                yield replace(chunk, file_name=name)
        except (RunNotFound, ExecutorRejected) as exc:
            raise NotFound(
                "DATA_NOT_FOUND", f"the executor has no data for {job_id}: {exc}", job_id=job_id
            ) from exc
        except ExecutorUnavailable as exc:
            raise Unavailable(
                "EXECUTOR_UNAVAILABLE", f"the executor of {job.device} cannot be reached"
            ) from exc

    def finished_data(self, change: Change) -> CachedFile | None:
        """The data file of a job's run that just succeeded (its terminal change), if cached."""
        job, run = change.job, change.job.current_run
        if not change.event.state.terminal or job.state is not JobState.SUCCEEDED:
            return None
        if run is None or run.data is None or run.task_id != (change.event.task_id or run.task_id):
            return None
        return self.recent_data.get(run.task_id, run.data.name)

    async def estimate(self, device: str, payload: Payload | None, payload_bytes: int = 0) -> Any:
        """The gateway's estimate for a circuit or benchmark payload on a provider device."""
        routes = await self._routes.routes(device)
        if self._routes.is_lab(device):
            raise InvalidArgument(
                "KIND_NOT_SUPPORTED", f"{device} is a lab device: nothing to estimate", device=device
            )
        validate_submission(Submission(device, payload, 0, "estimate", payload_bytes=payload_bytes), routes)
        assert self._routes.gateway is not None and payload is not None
        try:
            return await self._routes.gateway.estimate(device, payload)
        except (GatewayUnavailable, GatewayRejected) as exc:
            raise _from_gateway(exc) from exc

    async def get_result(self, job_id: str, task_id: str = "", refresh: bool = False) -> ResultView:
        """A provider run's results: from the cache, or fetched through the gateway (and cached)."""
        job = await self._get(job_id)
        if job.kind is JobKind.LAB_EXPERIMENT:
            raise FailedPrecondition(
                "NOT_A_PROVIDER_JOB",
                f"{job_id} is a lab job: its data is a file (FetchJobData)",
                job_id=job_id,
            )
        run = await self._run_of(job, task_id)
        if run is None or run.state not in (JobState.SUCCEEDED, JobState.FAILED):
            raise FailedPrecondition(
                "RESULT_NOT_READY", f"job {job_id} has no finished run yet", job_id=job_id
            )
        if run.result_json and not refresh:
            return ResultView(job_id, run.task_id, run.result_json, cached=True, fetch_time=run.result_time)
        gateway = self._routes.gateway
        if gateway is None or not (run.provider_task_ids or run.provider_submission_id):
            raise FailedPrecondition(
                "RESULT_NOT_READY", f"job {job_id} never reached the provider", job_id=job_id
            )
        submitted = Submitted(tuple(run.provider_task_ids), run.provider_submission_id)
        try:
            results = await gateway.fetch_result(job.device, submitted)
        except (GatewayUnavailable, GatewayRejected) as exc:
            raise _from_gateway(exc) from exc
        now = self._clock()
        await self._thread.call(self._run_log.store_result, run.task_id, results, now)
        return ResultView(job_id, run.task_id, results, cached=False, fetch_time=now)
