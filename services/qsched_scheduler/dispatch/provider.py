"""One dispatch loop per provider device (a cloud QPU or a simulator behind the gateway).

Unlike a lab board, a provider device takes several jobs at once: the loop keeps up
to `max_in_flight` runs submitted, each followed by its own task until the provider
reports every task terminal, then fetches and caches the results. The gateway's task
and submission ids are stored before following, so a restarted scheduler re-attaches
to them and no cloud job is orphaned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from qsched_scheduler.domain import Change, ErrorDetail, Job, JobState, Run
from qsched_scheduler.gateway_port import (
    TERMINAL_PROVIDER_STATES,
    GatewayRejected,
    GatewayUnavailable,
    ProviderGateway,
    ProviderStatus,
    Submitted,
)
from qsched_scheduler.store.base import RunUpdate

if TYPE_CHECKING:
    from qsched_scheduler.dispatch.lab import Stores
    from qsched_scheduler.leases import Leases

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 8
RETRY_MIN_S = 0.1
RETRY_MAX_S = 30.0
LEASED_WAKE_S = 0.25  # with replicas: submits on other replicas do not wake the holder, so it looks


def _failed(reason: str, message: str, result_json: str = "") -> RunUpdate:
    return RunUpdate(
        final_state=JobState.FAILED,
        error=ErrorDetail(reason, message),
        message=f"failed: {reason}",
        result_json=result_json,
    )


class ProviderDispatcher:
    def __init__(
        self,
        device: str,
        gateway: ProviderGateway,
        stores: Stores,
        publish: Callable[[Change], None],
        clock: Callable[[], datetime],
        held: Callable[[], bool],
        max_in_flight: int = MAX_IN_FLIGHT,
        leases: Leases | None = None,
    ):
        self.device = device
        self._leases = leases  # replicas: it dispatches only while this replica holds the lease
        self._queue_store = stores.queue
        self._run_log = stores.runs
        self._queries = stores.queries
        self._call = stores.thread.call
        self._publish = publish
        self._clock = clock
        self.held = held
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.gateway = gateway
        self.max_in_flight = max_in_flight
        self._runs: dict[str, asyncio.Task[None]] = {}  # task_id -> follower
        self._hold_until = 0.0  # after the gateway was unreachable: wait before submitting again
        self._backoff = RETRY_MIN_S
        self._statuses: dict[str, dict[str, ProviderStatus]] = {}  # run task id -> provider task -> latest

    def provider_statuses(self, run_task_id: str) -> list[ProviderStatus]:
        """The latest status of each provider task of an active run, as the gateway last reported it
        (in memory only: after a restart it is back with the follower's first Watch message)."""
        return list(self._statuses.get(run_task_id, {}).values())

    def start(self) -> None:
        if self._leases is not None:
            self._leases.add(self.device, self._lease_acquired, self._lease_lost)
            return
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"dispatch-{self.device}")

    def _lease_acquired(self) -> None:
        """Taken over: follow what is running (as after a restart), then claim what is queued."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"dispatch-{self.device}")

    def _lease_lost(self) -> None:
        for task in (self._task, *self._runs.values()):
            if task is not None:
                task.cancel()
        self._task = None
        self._runs.clear()

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._runs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _apply(self, task_id: str, update: RunUpdate) -> None:
        """Record an update of a run (durably when it must be), then tell the watchers."""
        for change in await self._call(self._run_log.apply_updates, [(task_id, update)], self._clock()):
            self._publish(change)

    async def _release(self, task_id: str, message: str) -> None:
        """Undo a claim that never reached the gateway: the job is queued again in its place."""
        self._publish(await self._call(self._queue_store.release_claim, task_id, message, self._clock()))

    async def cancel_run(self, run: Run, reason: str) -> None:
        if not run.provider_task_ids and not run.provider_submission_id:
            return  # not submitted yet: the follower sees cancel_requested... nothing to tell the provider
        try:
            await self.gateway.cancel(
                self.device, Submitted(tuple(run.provider_task_ids), run.provider_submission_id)
            )
        except (GatewayUnavailable, GatewayRejected) as exc:
            log.warning("cancel of %s on %s not delivered: %s", run.task_id, self.device, exc)

    # -- the loop ------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        for job in await self._call(self._queries.running_jobs):
            if job.device == self.device and job.current_run is not None:
                self._spawn(job.current_run.task_id, self._resume(job))
        while True:
            self._wake.clear()
            delay = self._hold_until - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while len(self._runs) < self.max_in_flight and not self.held():
                # The run takes the job's task id (allocated at submit or rerun).
                change = await self._call(
                    self._queue_store.claim_next, self.device, "", self._clock(), self.max_in_flight
                )
                if change is None:
                    break
                self._publish(change)
                assert change.job.current_run is not None
                self._spawn(change.job.current_run.task_id, self._run(change.job))
            if self._leases is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LEASED_WAKE_S):
                        await self._wake.wait()

    def _spawn(self, task_id: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._runs[task_id] = task

        def done(_task: asyncio.Task[None]) -> None:
            self._runs.pop(task_id, None)
            self._wake.set()

        task.add_done_callback(done)

    async def _resume(self, job: Job) -> None:
        """After a restart: follow what was submitted, or submit what never got that far."""
        run = job.current_run
        assert run is not None
        if run.provider_task_ids or run.provider_submission_id:
            await self._follow(
                run.task_id, Submitted(tuple(run.provider_task_ids), run.provider_submission_id)
            )
        else:  # claimed but not (known to be) submitted: the same request id makes this idempotent
            await self._run(job)

    async def _run(self, job: Job) -> None:
        assert job.current_run is not None
        task_id = job.current_run.task_id
        try:
            submitted = await self.gateway.submit(self.device, job.payload, job.job_id, request_id=task_id)
        except GatewayUnavailable as exc:
            self._hold_until = asyncio.get_running_loop().time() + self._backoff
            self._backoff = min(self._backoff * 2, RETRY_MAX_S)
            await self._release(task_id, f"gateway unavailable ({exc}); back in the queue")
            return
        except GatewayRejected as exc:
            await self._apply(task_id, _failed(exc.reason, exc.message))
            return
        self._backoff = RETRY_MIN_S
        ids = ", ".join(submitted.task_ids) or submitted.submission_id
        await self._apply(
            task_id,
            RunUpdate(
                provider_task_ids=list(submitted.task_ids),
                provider_submission_id=submitted.submission_id,
                message=f"submitted to {self.device}: {ids}",
            ),
        )
        await self._follow(task_id, submitted)

    async def _follow(self, task_id: str, submitted: Submitted) -> None:
        """Follow the provider tasks to the end (re-attaching whenever the gateway was
        unreachable), then record the outcome and cache the results."""
        try:
            await self._follow_tasks(task_id, submitted)
        finally:
            self._statuses.pop(task_id, None)

    async def _follow_tasks(self, task_id: str, submitted: Submitted) -> None:
        states: dict[str, str] = {}
        messages: dict[str, str] = {}
        latest = self._statuses.setdefault(task_id, {})
        started, last_position, backoff = False, -1, RETRY_MIN_S
        while not (states and all(s in TERMINAL_PROVIDER_STATES for s in states.values())):
            try:
                async for status in self.gateway.watch(self.device, submitted):
                    states[status.task_id] = status.state
                    latest[status.task_id] = status
                    if status.message:
                        messages[status.task_id] = status.message
                    if status.state == "RUNNING" and not started:
                        started = True
                        await self._apply(task_id, RunUpdate(started=True, message="running on the provider"))
                    elif status.state == "QUEUED" and status.queue_position != last_position:
                        last_position = status.queue_position
                        if last_position:
                            await self._apply(
                                task_id, RunUpdate(message=f"provider queue position {last_position}")
                            )
                backoff = RETRY_MIN_S
                if not (states and all(s in TERMINAL_PROVIDER_STATES for s in states.values())):
                    await asyncio.sleep(backoff)  # the stream ended early: ask again, patiently
            except GatewayUnavailable:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
            except GatewayRejected as exc:
                await self._apply(task_id, _failed(exc.reason, exc.message))
                return
        final = set(states.values())
        if "CANCELLED" in final:
            cancelled = RunUpdate(
                final_state=JobState.CANCELLED,
                error=ErrorDetail("CANCELLED", "cancelled at the provider"),
                message="cancelled at the provider",
            )
            await self._apply(task_id, cancelled)
            return
        try:
            results = await self.gateway.fetch_result(self.device, submitted)
        except (GatewayUnavailable, GatewayRejected) as exc:
            results = ""
            fetch_error = str(exc)
        else:
            fetch_error = ""
        # The tasks ran even when no status said RUNNING (a fast one ends between two looks): the
        # run's start is recorded with its end then, not left unknown.
        if "FAILED" in final:
            detail = "; ".join(f"{t}: {m}" for t, m in sorted(messages.items()) if states.get(t) == "FAILED")
            end = _failed("PROVIDER_TASK_FAILED", detail or "a provider task failed", results)
        elif fetch_error:
            end = _failed("RESULT_UNAVAILABLE", f"results could not be fetched: {fetch_error}")
        else:
            end = RunUpdate(final_state=JobState.SUCCEEDED, message="succeeded", result_json=results)
        await self._apply(task_id, replace(end, started=True) if not started else end)
