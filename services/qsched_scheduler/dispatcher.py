"""One dispatch loop per lab device: claim the next job when the device is free,
run it on the executor, and record what the executor reports.

Event-driven: the loop sleeps on an asyncio.Event that submit and cancel set, so
a job submitted to an idle device is claimed at once, and the next job is
claimed as soon as the executor reports the previous one terminal."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from opentelemetry import trace

from qsched_runtime.tracing import context_from_traceparent, tracer
from qsched_scheduler.config_port import ConfigPinner, ConfigsUnavailable, PinnedConfig, PinRefused
from qsched_scheduler.dispatch_loop import DispatchLoop, StoreCall
from qsched_scheduler.domain import Change, ErrorDetail, Job, JobState, Run
from qsched_scheduler.executor_port import (
    ExecRequest,
    ExecUpdate,
    ExecutorRejected,
    ExecutorUnavailable,
    LabExecutor,
    RunNotFound,
)
from qsched_scheduler.store.base import RunUpdate

log = logging.getLogger(__name__)


# How long an unreachable executor may stay unreachable before its run is declared lost.
EXECUTOR_LOST_AFTER_S = 30.0
RETRY_MIN_S = 0.05
RETRY_MAX_S = 2.0


def exec_request(job_id: str, task_id: str, owner: str, body: dict[str, Any]) -> ExecRequest:
    """The executor's view of a lab experiment payload."""
    return ExecRequest(
        job_id=job_id,
        task_id=task_id,
        owner=owner,
        experiment_class=body.get("experiment_class", ""),
        experiment_module=body.get("experiment_module", ""),
        expt_config_json=body.get("expt_config_json", "") or "{}",
    )


def to_run_update(update: ExecUpdate) -> RunUpdate:
    if update.kind == "accepted":
        return RunUpdate(update.seq, message="accepted by the executor")
    if update.kind == "started":
        return RunUpdate(update.seq, started=True, message="started on the device")
    if update.kind == "progress":
        detail = f" ({update.rounds_done}/{update.rounds_total} rounds)" if update.rounds_total else ""
        return RunUpdate(
            update.seq, progress=update.fraction, message=f"progress {update.fraction:.0%}{detail}"
        )
    if update.kind == "result":
        return RunUpdate(
            update.seq,
            final_state=JobState.SUCCEEDED,
            message="succeeded",
            data_file_path=update.data_file_path,
            summary=dict(update.summary),
        )
    if update.kind == "cancelled":
        return RunUpdate(
            update.seq,
            final_state=JobState.CANCELLED,
            error=ErrorDetail("CANCELLED", update.message or "cancelled while running"),
            message="cancelled while running",
        )
    return RunUpdate(
        update.seq,
        final_state=JobState.FAILED,
        error=ErrorDetail(update.reason or "RUN_FAILED", update.message),
        message=f"failed: {update.reason}",
    )


def _failed(reason: str, message: str) -> RunUpdate:
    return RunUpdate(
        final_state=JobState.FAILED, error=ErrorDetail(reason, message), message=f"failed: {reason}"
    )


class DeviceDispatcher(DispatchLoop):
    def __init__(
        self,
        device: str,
        executor: LabExecutor,
        store: Any,
        call: StoreCall,
        publish: Callable[[Change], None],
        clock: Callable[[], datetime],
        lost_after_s: float = EXECUTOR_LOST_AFTER_S,
        pinner: ConfigPinner | None = None,
    ):
        super().__init__(device, store, call, publish, clock)
        self.executor = executor
        self._lost_after_s = lost_after_s
        self._pinner = pinner

    async def cancel_run(self, run: Run, reason: str) -> None:
        try:
            await self.executor.cancel(run.task_id, reason)
        except (ExecutorUnavailable, ExecutorRejected, RunNotFound) as exc:
            # The run goes on being followed; if the executor is gone, the follow loop
            # declares it lost. The job keeps cancel_requested for the operator to see.
            log.warning("cancel of %s on %s not delivered: %s", run.task_id, self.device, exc)

    # -- the loop ------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        await self._reconcile()
        backoff = RETRY_MIN_S
        while True:
            self._wake.clear()
            change = await self._call(self._store.claim_next, self.device, str(uuid.uuid4()), self._clock())
            if change is None:
                await self._wake.wait()
                continue
            self._publish(change)
            if await self._run(change.job):
                backoff = RETRY_MIN_S
            else:  # executor unreachable or busy: the job went back to the queue; retry later
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    async def _reconcile(self) -> None:
        """After a restart: re-attach to runs the database says are running."""
        for job in await self._call(self._store.running_jobs):
            if job.device != self.device or job.current_run is None:
                continue
            run = job.current_run
            log.info("re-attaching to %s (task %s) on %s", job.job_id, run.task_id, self.device)
            await self._follow(job, lambda run=run: self.executor.attach(run.task_id, run.executor_seq))

    async def _run(self, job: Job) -> bool:
        """Execute a claimed job. False if it was put back in the queue."""
        assert job.current_run is not None
        task_id = job.current_run.task_id
        request = exec_request(job.job_id, task_id, job.owner, job.payload.body)
        if self._pinner is not None:
            try:
                pinned = await self._pin(job)
            except ConfigsUnavailable as exc:
                await self._release(task_id, f"config service unavailable ({exc}); back in the queue")
                return False
            except PinRefused as exc:
                await self._apply(task_id, _failed(exc.reason, exc.message))
                return True
            request = replace(
                request, configs=tuple((p.config_type, p.revision_id, p.sha256) for p in pinned)
            )
        with tracer().start_as_current_span(
            f"run {job.job_id}",
            context=context_from_traceparent(job.trace_parent),
            kind=trace.SpanKind.INTERNAL,
        ) as span:
            span.set_attributes(
                {"qsched.job_id": job.job_id, "qsched.task_id": task_id, "qsched.device": self.device}
            )
            stream = self.executor.execute(request)
            try:
                first = await anext(stream)
            except (ExecutorUnavailable, StopAsyncIteration) as exc:
                await self._release(task_id, f"executor unavailable ({exc}); back in the queue")
                return False
            except ExecutorRejected as exc:
                if exc.reason == "DEVICE_BUSY":
                    await self._release(task_id, "device busy; back in the queue")
                    return False
                await self._apply(task_id, _failed(exc.reason, exc.message))
                return True
            except RunNotFound as exc:
                await self._apply(task_id, _failed("EXECUTOR_LOST", str(exc)))
                return True
            await self._follow(job, lambda: stream, first)
        return True

    async def _pin(self, job: Job) -> list[PinnedConfig]:
        """Pin the config revisions this run uses and record them on the run."""
        assert self._pinner is not None and job.current_run is not None
        body = job.payload.body
        pinned = await self._pinner.pin(
            job.job_id, body.get("config_revisions") or {}, body.get("config_overrides") or {}, job.owner
        )
        revisions = {p.config_type: p.revision_id for p in pinned}
        listing = ", ".join(f"{t} {r}" for t, r in sorted(revisions.items())) or "none"
        await self._apply(
            job.current_run.task_id, RunUpdate(config_revisions=revisions, message=f"pinned {listing}")
        )
        return pinned

    async def _follow(
        self,
        job: Job,
        open_stream: Callable[[], AsyncIterator[ExecUpdate]],
        first: ExecUpdate | None = None,
    ) -> None:
        """Apply updates until the run is terminal, re-attaching if the stream breaks."""
        assert job.current_run is not None
        task_id = job.current_run.task_id
        last_seq = job.current_run.executor_seq
        unreachable_since: float | None = None
        loop = asyncio.get_running_loop()
        stream: AsyncIterator[ExecUpdate] | None = open_stream()
        pending = first
        while True:
            try:
                if pending is None:
                    assert stream is not None
                    pending = await anext(stream)
                update, pending = pending, None
                unreachable_since = None
                if update.seq and update.seq <= last_seq:
                    continue  # replayed on re-attach; already applied
                last_seq = max(last_seq, update.seq)
                await self._apply(task_id, to_run_update(update))
                if update.terminal:
                    return
                continue
            except StopAsyncIteration:
                reason = "stream ended before the run finished"
            except ExecutorUnavailable as exc:
                reason = str(exc)
            except RunNotFound:
                await self._apply(task_id, _failed("EXECUTOR_LOST", "the executor no longer knows this run"))
                return
            except ExecutorRejected as exc:
                await self._apply(task_id, _failed("EXECUTOR_LOST", f"re-attach refused: {exc}"))
                return
            now = loop.time()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > self._lost_after_s:
                await self._apply(
                    task_id,
                    _failed("EXECUTOR_LOST", f"executor unreachable for {self._lost_after_s:.0f}s: {reason}"),
                )
                return
            await asyncio.sleep(RETRY_MIN_S if now == unreachable_since else RETRY_MAX_S)
            stream = self.executor.attach(task_id, last_seq)
