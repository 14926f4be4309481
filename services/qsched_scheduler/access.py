"""Who may do what to jobs and devices, and the per-user quotas: the layer between the
JobService servicer and the Scheduler for every call that changes something.

The caller is the authenticated principal (qsched_runtime.auth). A person acts on their
own jobs; the operator role acts on anyone's, holds device queues and may submit above
the user priority limit. Acting on someone else's job, holding a queue and a privileged
priority are written to the audit log. Reads (queue views, job details) are open to
every authenticated user: the queue is shared and its transparency is the point."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

from qsched_core.errors import DomainError, InvalidArgument, NotFound, PermissionDenied, QuotaExceeded
from qsched_core.principal import Principal, Role, acting_as
from qsched_identity.audit import AuditLog
from qsched_scheduler.domain import MAX_PAYLOAD_BYTES, Change, Job, JobState, Payload
from qsched_scheduler.holds import DRAINING, PAUSED, DeviceHolds, QueueState
from qsched_scheduler.scheduler import DeviceStatus, Scheduler, SubmitResult, utcnow
from qsched_scheduler.validation import Submission

MAX_SUBMIT_JOBS = 1000  # per SubmitJobs call


@dataclass(frozen=True)
class Limits:
    max_queued_per_user: int = 1000
    max_payload_bytes_per_job: int = MAX_PAYLOAD_BYTES
    max_user_priority: int = 10


class QueuedByOwner:
    """How many jobs each owner has queued, kept from the scheduler's change stream after
    one count from the store per owner, plus submissions in flight (reserved), so
    concurrent submits of one user cannot overshoot the limit."""

    def __init__(self, count_stored: Callable[[str], Awaitable[int]], cached: bool = True):
        self._count_stored = count_stored
        # With scheduler replicas the changes of the others never reach this process: every
        # count is read from the store (the submit transaction checks the quota exactly).
        self._cached = cached
        self._queued: dict[str, int] = {}
        self._reserved: dict[str, int] = {}

    def on_change(self, change: Change) -> None:
        owner = change.job.owner
        if not self._cached or owner not in self._queued:
            return  # not loaded yet: the first count will see this change in the store
        was = change.previous_state is JobState.QUEUED
        now = change.job.state is JobState.QUEUED
        if now and not was:
            self._queued[owner] += 1
        elif was and not now:
            self._queued[owner] = max(0, self._queued[owner] - 1)

    async def count(self, owner: str) -> int:
        if not self._cached:
            return await self._count_stored(owner) + self._reserved.get(owner, 0)
        if owner not in self._queued:
            stored = await self._count_stored(owner)
            self._queued.setdefault(owner, stored)
        return self._queued[owner] + self._reserved.get(owner, 0)

    @contextlib.asynccontextmanager
    async def reserve(self, owner: str, limit: int) -> AsyncIterator[None]:
        queued = await self.count(owner)
        if queued >= limit:
            raise QuotaExceeded(
                "QUEUED_JOBS_QUOTA",
                f"{owner} already has {queued} queued jobs; the limit is {limit} per user",
                subject=f"user:{owner}",
                queued=queued,
                limit=limit,
            )
        self._reserved[owner] = self._reserved.get(owner, 0) + 1
        try:
            yield
        finally:
            self._reserved[owner] -= 1


@dataclass(frozen=True)
class DeviceView:
    status: DeviceStatus
    queue_state: QueueState
    hold_reason: str = ""
    held_by: str = ""
    hold_time: datetime | None = None


class JobDesk:
    def __init__(
        self,
        scheduler: Scheduler,
        holds: DeviceHolds,
        count_stored: Callable[[str], Awaitable[int]],
        limits: Limits = Limits(),
        audit: AuditLog | None = None,
        clock: Callable[[], datetime] = utcnow,
        replicas: bool = False,
    ):
        self._scheduler = scheduler
        self._clock = clock
        self._holds = holds
        self._limits = limits
        self._audit = audit or AuditLog(None)
        self._queued = QueuedByOwner(count_stored, cached=not replicas)
        self._replicas = replicas
        scheduler.bus.add_listener(self._queued.on_change)

    # -- jobs ------------------------------------------------------------------------------------------
    async def submit_all(self, who: Principal, submissions: list[Submission]) -> list[SubmitResult]:
        """Several jobs (SubmitJobs): all are checked before any is queued (the first failure,
        with its index, refuses the call); then each goes the `submit` way at once, so they
        share the store's group commit (one transaction)."""
        if len(submissions) > MAX_SUBMIT_JOBS:
            raise InvalidArgument(
                "TOO_MANY_JOBS",
                f"SubmitJobs takes at most {MAX_SUBMIT_JOBS} jobs, got {len(submissions)}",
                limit=MAX_SUBMIT_JOBS,
            )

        async def check(submission: Submission) -> None:
            await self._scheduler.check(replace(submission, owner=acting_as(submission.owner, who)))

        _first_error(await asyncio.gather(*map(check, submissions), return_exceptions=True))
        results = await asyncio.gather(*(self.submit(who, s) for s in submissions), return_exceptions=True)
        _first_error(results)
        return results  # type: ignore[return-value]

    async def submit(self, who: Principal, submission: Submission) -> SubmitResult:
        owner = acting_as(submission.owner, who)
        privileged = submission.priority > self._limits.max_user_priority
        if privileged and not who.has(Role.OPERATOR):
            raise PermissionDenied(
                "PRIORITY_ABOVE_USER_LIMIT",
                f"priority {submission.priority} is above the user limit "
                f"{self._limits.max_user_priority}; it needs the operator role",
                role=str(Role.OPERATOR),
                limit=self._limits.max_user_priority,
            )
        size, quota = submission.payload_bytes, self._limits.max_payload_bytes_per_job
        if quota < size <= MAX_PAYLOAD_BYTES:  # larger than the hard limit: validation refuses it
            raise QuotaExceeded(
                "PAYLOAD_SIZE_QUOTA",
                f"the payload is {size} bytes; the per-user limit is {quota}",
                subject=f"user:{owner}",
                size=size,
                limit=quota,
            )
        # The count here is this process's: exact with one replica (every change of the queue
        # passes through it), so only with replicas does the store count the owner's queued jobs
        # again in the inserting transaction (exact across replicas, one query per submit).
        limit = self._limits.max_queued_per_user
        async with self._queued.reserve(owner, limit):
            result = await self._scheduler.submit(
                replace(submission, owner=owner, queued_limit=limit if self._replicas else 0)
            )
        if privileged and result.created:
            await self._audit.record(
                who, "job.submit_privileged_priority", result.job.job_id, priority=submission.priority
            )
        return result

    async def cancel(self, who: Principal, job_id: str, reason: str, task_id: str = "") -> Job:
        job = await self._own_or_operator(who, job_id, "cancel")
        cancelled = await self._scheduler.cancel(job_id, reason, task_id)
        if job.owner != who.name:
            await self._audit.record(who, "job.cancel", job_id, owner=job.owner, reason=reason)
        return cancelled

    async def delete(self, who: Principal, job_id: str) -> None:
        job = await self._own_or_operator(who, job_id, "delete")
        await self._scheduler.delete(job_id)
        if job.owner != who.name:
            await self._audit.record(who, "job.delete", job_id, owner=job.owner)

    async def rerun(
        self,
        who: Principal,
        job_id: str,
        payload: Payload | None,
        payload_bytes: int,
        request_id: str,
        experiment_revision: str = "",
    ) -> Job:
        job = await self._own_or_operator(who, job_id, "rerun")
        async with self._queued.reserve(job.owner, self._limits.max_queued_per_user):
            rerun = await self._scheduler.rerun(
                job_id, payload, payload_bytes, request_id, experiment_revision
            )
        if job.owner != who.name:
            await self._audit.record(who, "job.rerun", job_id, owner=job.owner)
        return rerun

    async def _own_or_operator(self, who: Principal, job_id: str, verb: str) -> Job:
        job = await self._scheduler.get(job_id)
        if job.owner != who.name and not who.has(Role.OPERATOR):
            raise PermissionDenied(
                "NOT_JOB_OWNER",
                f"{job_id} belongs to {job.owner}; only its owner or an operator may {verb} it",
                job_id=job_id,
                owner=job.owner,
                role=str(Role.OPERATOR),
            )
        return job

    # -- devices ---------------------------------------------------------------------------------------
    async def device(self, name: str) -> DeviceView:
        for status in await self._scheduler.device_statuses():
            if status.name == name:
                return self.view(status)
        raise NotFound("DEVICE_NOT_FOUND", f"no device {name!r}", device=name)

    async def devices(self) -> list[DeviceView]:
        return [self.view(s) for s in await self._scheduler.device_statuses()]

    def view(self, status: DeviceStatus) -> DeviceView:
        hold = self._holds.hold_of(status.name)
        state = self._holds.state(status.name, busy=bool(status.running_job_id))
        if hold is None:
            return DeviceView(status, state)
        return DeviceView(status, state, hold.reason, hold.held_by, hold.hold_time)

    async def pause(self, who: Principal, name: str, reason: str) -> DeviceView:
        return await self._hold(who, name, PAUSED, "device.pause", reason)

    async def drain(self, who: Principal, name: str, reason: str) -> DeviceView:
        return await self._hold(who, name, DRAINING, "device.drain", reason)

    async def resume(self, who: Principal, name: str) -> DeviceView:
        await self.device(name)  # NOT_FOUND for an unknown device
        if await self._holds.release(name):
            self._scheduler.hold_changed(name)  # its dispatcher looks at the queue again
            await self._audit.record(who, "device.resume", name)
        return await self.device(name)

    async def _hold(self, who: Principal, name: str, mode: str, action: str, reason: str) -> DeviceView:
        await self.device(name)
        await self._holds.hold(name, mode, who.name, reason, self._clock())
        self._scheduler.hold_changed(name)  # runs staged on the executor that have not started come back
        await self._audit.record(who, action, name, reason=reason)
        return await self.device(name)


def _first_error(results: list) -> None:
    """Raise the first failure of a SubmitJobs entry, naming its index."""
    for index, result in enumerate(results):
        if isinstance(result, DomainError):
            result.metadata["index"] = str(index)
            result.message = f"jobs[{index}]: {result.message}"
            raise result
        if isinstance(result, BaseException):
            raise result
