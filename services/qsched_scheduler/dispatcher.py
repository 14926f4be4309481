"""One dispatch loop per lab device: claim the next job when the device is free,
run it on the executor, and record what the executor reports.

Event-driven: the loop sleeps on an asyncio.Event that submit and cancel set, so
a job submitted to an idle device is claimed at once, and the next job is
claimed as soon as the executor reports the previous one terminal."""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from opentelemetry import trace

from qsched_core.tracing import context_from_traceparent, tracer
from qsched_scheduler.config_port import ConfigPinner, ConfigsUnavailable, PinnedConfig, PinRefused
from qsched_scheduler.dispatch_loop import DispatchLoop, StoreCall, cancel_tasks
from qsched_scheduler.domain import MAX_PRIORITY, MIN_PRIORITY, Change, ErrorDetail, Job, JobState, Run
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
# Pipelined dispatch: how many queued jobs are handed to the executor ahead of time, behind
# the running one (the executor starts each the moment the previous run returns).
PIPELINE_DEPTH = 2


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


@dataclass
class _Staged:
    """A queued job handed to the executor ahead of time (or refused when handed over)."""

    job: Job
    task_id: str
    after: str  # the run it follows on the executor
    stream: AsyncIterator[ExecUpdate] | None = None
    first: ExecUpdate | None = None
    failure: RunUpdate | None = None  # refused by the executor or the config service
    revisions: dict[str, str] = field(default_factory=dict)
    withdraw: bool = False  # cancelled by the user before it ran
    taking_back: asyncio.Future[bool] | None = None  # a higher-priority job arrived: take it back?


_END = object()


class _ReadAhead:
    """Reads a run's update stream into a queue as updates arrive, so that the dispatcher can
    take everything that has arrived at once (one store transaction for all of it)."""

    def __init__(self, stream: AsyncIterator[ExecUpdate], first: ExecUpdate | None = None):
        self._stream = stream
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        if first is not None:
            self._queue.put_nowait(first)
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for update in self._stream:
                self._queue.put_nowait(update)
                if update.terminal:
                    break
            self._queue.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the reader, in order
            self._queue.put_nowait(exc)

    async def next_batch(self) -> list[ExecUpdate]:
        """At least one update (waiting for it), and every other one already here. Raises what
        the stream raised (StopAsyncIteration at its end) once the updates before it are taken."""
        batch: list[ExecUpdate] = []
        item = await self._queue.get()
        while True:
            if item is _END or isinstance(item, BaseException):
                if batch:  # give out what came first; the end comes with the next call
                    self._queue = _requeued(self._queue, item)
                    return batch
                raise StopAsyncIteration if item is _END else item  # type: ignore[misc]
            batch.append(item)  # type: ignore[arg-type]
            if self._queue.empty():
                return batch
            item = self._queue.get_nowait()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        closer = getattr(self._stream, "aclose", None)
        if closer is not None:
            await closer()


def _requeued(queue: asyncio.Queue[object], head: object) -> asyncio.Queue[object]:
    """`queue` with `head` put back in front."""
    rest = [head]
    while not queue.empty():
        rest.append(queue.get_nowait())
    for item in rest:
        queue.put_nowait(item)
    return queue


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


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
        # Pipelined dispatch: queued jobs handed to the executor ahead of time, in run order.
        self.pipeline_depth = PIPELINE_DEPTH
        self._chain: collections.deque[_Staged] = collections.deque()
        self._chain_changed = asyncio.Event()
        self._stager: asyncio.Task[None] | None = None
        self._stop_staging = asyncio.Event()
        self._tail = ""  # the last run the executor took (what the next staged run follows)
        self._handing: _Staged | None = None  # being handed over right now
        # The highest priority queued while a job was being picked and handed over: a job
        # picked before it arrived is taken back once it reaches the chain.
        self._arrived_during_handover: int | None = None
        self._executor_pipelines: bool | None = None  # unknown until asked
        self._lost_after_s = lost_after_s
        self._pinner = pinner

    async def stop(self) -> None:
        if self._stager is not None:
            await cancel_tasks([self._stager])
        await super().stop()

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
            if self.held():  # a held queue starts nothing; ResumeDevice wakes the loop
                await self._wake.wait()
                continue
            task_id = str(uuid.uuid4())
            pinned: list[PinnedConfig] | None = None
            refused: PinRefused | None = None
            if self._pinner is None:
                change = await self._call(self._store.claim_next, self.device, task_id, self._clock())
                if change is None:
                    await self._wake.wait()
                    continue
            else:
                # Pin for the job at the head first, then claim it with its revisions in one
                # durable transaction (one commit fewer on the way to the board).
                head = await self._call(self._store.next_claimable, self.device)
                if head is None:
                    await self._wake.wait()
                    continue
                try:
                    pinned = await self._pin_for(head)
                except ConfigsUnavailable as exc:
                    log.info("config service unavailable for %s on %s: %s", head.job_id, self.device, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MAX_S)
                    continue
                except PinRefused as exc:
                    refused = exc
                revisions = {p.config_type: p.revision_id for p in pinned or ()}
                change = await self._call(
                    self._store.claim_next, self.device, task_id, self._clock(), 1, head.job_id, revisions
                )
                if change is None:  # the queue changed meanwhile: look again
                    continue
            self._publish(change)
            if refused is not None:
                await self._apply(task_id, _failed(refused.reason, refused.message))
                continue
            if await self._run(change.job, pinned):
                backoff = RETRY_MIN_S
            else:  # executor unreachable or busy: the job went back to the queue; retry later
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)

    async def _reconcile(self) -> None:
        """After a restart: re-attach to runs the database says are running, then to the runs
        handed to the executor ahead of time (pipelined dispatch), in run order."""
        for job in await self._call(self._store.running_jobs):
            if job.device != self.device or job.current_run is None:
                continue
            run = job.current_run
            log.info("re-attaching to %s (task %s) on %s", job.job_id, run.task_id, self.device)
            await self._follow(job, lambda run=run: self.executor.attach(run.task_id, run.executor_seq))
        for job in await self._call(self._store.staged_jobs, self.device):
            staged = _Staged(job, job.staged_task_id, "")
            try:
                staged.stream = self.executor.attach(job.staged_task_id, 0)
                staged.first = await anext(staged.stream)
            except (RunNotFound, ExecutorRejected, ExecutorUnavailable, StopAsyncIteration) as exc:
                # Never reached the executor (or it is gone): an ordinary queued job again.
                log.info("dropping the staging of %s on %s: %s", job.job_id, self.device, exc)
                await self._call(self._store.unstage, job.staged_task_id)
                continue
            self._chain.append(staged)
        await self._follow_staged()

    # -- pipelined dispatch ----------------------------------------------------------------------------
    def _pipelining(self) -> bool:
        return self.pipeline_depth > 0 and self._executor_pipelines is not False

    async def _probe_pipelining(self) -> bool:
        """Ask the executor once whether it takes runs ahead of time (an adapter without
        `pipelining`, or an executor that predates it, is driven one run at a time)."""
        if self._executor_pipelines is None:
            probe = getattr(self.executor, "pipelining", None)
            if probe is None:
                self._executor_pipelines = False
            else:
                try:
                    self._executor_pipelines = bool(await probe())
                except (ExecutorUnavailable, ExecutorRejected, RunNotFound) as exc:
                    log.info("could not ask %s about pipelined dispatch: %s", self.device, exc)
                    return False
        return self._executor_pipelines

    def queued(self, priority: int) -> None:
        """A job joined the queue: jobs handed over ahead of time at a lower priority are taken
        back from the executor if they have not started, so that the new job runs first."""
        if self._arrived_during_handover is not None:
            self._arrived_during_handover = max(self._arrived_during_handover, priority)
        if any(s.job.priority < priority and s.taking_back is None for s in self._chain):
            asyncio.get_running_loop().create_task(self._take_back_below(priority))

    def take_back_all(self) -> None:
        """Take back every job handed over ahead of time that has not started (a held queue)."""
        if any(s.taking_back is None for s in self._chain):
            asyncio.get_running_loop().create_task(self._take_back_below(MAX_PRIORITY + 1))

    async def _take_back_below(self, priority: int) -> None:
        try:
            await self._take_back(priority)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("taking jobs back from %s failed", self.device)

    async def _take_back(self, priority: int) -> None:
        for staged in reversed(list(self._chain)):  # the last handed over first
            if staged.job.priority >= priority or staged.taking_back is not None:
                continue
            staged.taking_back = asyncio.get_running_loop().create_future()
            try:
                taken = await self.executor.cancel(
                    staged.task_id, "a higher-priority job came first", only_if_waiting=True
                )
            except (ExecutorUnavailable, ExecutorRejected, RunNotFound):
                taken = False
            staged.taking_back.set_result(taken)
            if not taken:
                return  # it has started, and so have the ones before it
            if staged in self._chain:  # still ours to drop (else _follow_staged drops it)
                self._chain.remove(staged)
                await self._dropped(staged)
                self._chain_changed.set()

    async def _dropped(self, staged: _Staged) -> None:
        """A staged run the executor gave back: its job is an ordinary queued job again."""
        await self._call(self._store.unstage, staged.task_id)
        if staged.stream is not None:
            closer = getattr(staged.stream, "aclose", None)
            if closer is not None:
                await closer()

    def cancel_staged(self, job_id: str) -> None:
        """A queued job was cancelled: if it was handed to the executor ahead of time, withdraw it."""
        for staged in (*self._chain, self._handing):
            if staged is not None and staged.job.job_id == job_id:
                staged.withdraw = True
                if staged.stream is not None:
                    asyncio.get_running_loop().create_task(self.cancel_run_quietly(staged.task_id))

    async def cancel_run_quietly(self, task_id: str) -> None:
        try:
            await self.executor.cancel(task_id, "cancelled while waiting for the device")
        except (ExecutorUnavailable, ExecutorRejected, RunNotFound) as exc:
            log.info("withdrawing %s on %s: %s", task_id, self.device, exc)

    async def _follow_staged(self) -> None:
        """Promote and follow the staged runs in order (the executor starts each as soon as the
        one before it returns), staging the next queued jobs meanwhile."""
        while self._chain or self._stager is not None:
            if not self._chain:
                assert self._stager is not None
                self._stop_staging.set()
                self._stage_wake.set()
                await self._stager
                self._stager = None
                continue
            staged = self._chain.popleft()
            self._chain_changed.set()
            if staged.taking_back is not None and await staged.taking_back:
                await self._dropped(staged)
                continue
            change = await self._call(
                self._store.start_staged, staged.task_id, self._clock(), staged.revisions
            )
            if change is None or staged.stream is None:
                if change is not None:  # the executor refused it when it was handed over
                    self._publish(change)
                    assert staged.failure is not None
                    await self._apply(staged.task_id, staged.failure)
                elif staged.stream is not None:  # cancelled while waiting: off the board first
                    await self.cancel_run_quietly(staged.task_id)
                    await self._drain(staged.stream, staged.first)
                continue
            self._publish(change)
            job = change.job
            if staged.revisions:
                listing = ", ".join(f"{t} {r}" for t, r in sorted(staged.revisions.items())) or "none"
                # The revisions are on the run already (start_staged): this is the event only.
                await self._apply(staged.task_id, RunUpdate(message=f"pinned {listing}"))
            self._ensure_stager(staged.task_id)
            with tracer().start_as_current_span(
                f"run {job.job_id}",
                context=context_from_traceparent(job.trace_parent),
                kind=trace.SpanKind.INTERNAL,
            ) as span:
                span.set_attributes(
                    {
                        "qsched.job_id": job.job_id,
                        "qsched.task_id": staged.task_id,
                        "qsched.device": self.device,
                    }
                )
                stream = staged.stream
                await self._follow(job, lambda stream=stream: stream, staged.first)

    def _ensure_stager(self, running_task_id: str) -> None:
        if self._stager is None and self._pipelining():
            self._stop_staging = asyncio.Event()
            self._tail = running_task_id
            self._stager = asyncio.get_running_loop().create_task(self._stage_loop(self._stop_staging))

    async def _drain(self, stream: AsyncIterator[ExecUpdate], first: ExecUpdate | None) -> None:
        """Read a run's updates to its end without recording them (its job is no longer ours)."""
        try:
            if first is not None and first.terminal:
                return
            async for update in stream:
                if update.terminal:
                    return
        except (ExecutorUnavailable, ExecutorRejected, RunNotFound) as exc:
            log.info("dropped run on %s ended unseen: %s", self.device, exc)

    async def _stage_loop(self, stop: asyncio.Event) -> None:
        """Keep up to `pipeline_depth` queued jobs handed to the executor behind the running one.
        A failure here only stops pipelining for now: the dispatch loop goes on without it."""
        try:
            await self._stage(stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handing jobs ahead to %s stopped", self.device)

    async def _stage(self, stop: asyncio.Event) -> None:
        if not await self._probe_pipelining():
            return
        while not stop.is_set():
            self._stage_wake.clear()
            self._chain_changed.clear()
            if self.held() or len(self._chain) >= self.pipeline_depth:
                await _first_of(self._stage_wake, self._chain_changed, stop)
                continue
            task_id = str(uuid.uuid4())
            self._arrived_during_handover = MIN_PRIORITY - 1
            job = await self._call(self._store.stage_next, self.device, task_id, self.pipeline_depth)
            if job is None:
                self._arrived_during_handover = None
                await _first_of(self._stage_wake, self._chain_changed, stop)
                continue
            staged = self._handing = _Staged(job, task_id, self._tail)
            try:
                handed = await self._hand_over(staged)
            finally:
                self._handing = None
            arrived, self._arrived_during_handover = self._arrived_during_handover, None
            if not handed:
                await self._call(self._store.unstage, task_id)
                return
            self._chain.append(staged)
            if arrived is not None and arrived > job.priority:  # it overtook this one meanwhile
                asyncio.get_running_loop().create_task(self._take_back_below(arrived))

    async def _hand_over(self, staged: _Staged) -> bool:
        """Pin the staged job's configs and send it to the executor to run after the tail of
        the chain. False (staging stops) when it cannot be handed over now."""
        job = staged.job
        request = exec_request(job.job_id, staged.task_id, job.owner, job.payload.body)
        if self._pinner is not None:
            body = job.payload.body
            try:
                pinned = await self._pinner.pin(
                    job.job_id,
                    body.get("config_revisions") or {},
                    body.get("config_overrides") or {},
                    job.owner,
                )
            except ConfigsUnavailable:
                return False
            except PinRefused as exc:
                staged.failure = _failed(exc.reason, exc.message)
                return True
            staged.revisions = {p.config_type: p.revision_id for p in pinned}
            request = replace(
                request, configs=tuple((p.config_type, p.revision_id, p.sha256) for p in pinned)
            )
        stream = self.executor.execute(replace(request, after_task_id=staged.after))
        try:
            first = await anext(stream)
        except ExecutorRejected as exc:
            if exc.reason == "DEVICE_BUSY":  # not behind the run we thought: try again later
                log.info("%s did not take %s ahead of time: %s", self.device, job.job_id, exc)
                return False
            staged.failure = _failed(exc.reason, exc.message)
            return True
        except (ExecutorUnavailable, RunNotFound, StopAsyncIteration):
            return False
        staged.stream, staged.first = stream, first
        self._tail = staged.task_id
        if staged.withdraw:
            await self.cancel_run_quietly(staged.task_id)
        return True

    async def _run(self, job: Job, pinned: list[PinnedConfig] | None = None) -> bool:
        """Execute a claimed job (its configs pinned already when `pinned` is given). False if
        it was put back in the queue."""
        assert job.current_run is not None
        task_id = job.current_run.task_id
        request = exec_request(job.job_id, task_id, job.owner, job.payload.body)
        if pinned is not None:  # recorded on the run by the claim: log the event only (no fsync)
            revisions = sorted((p.config_type, p.revision_id) for p in pinned)
            listing = ", ".join(f"{t} {r}" for t, r in revisions) or "none"
            await self._apply(task_id, RunUpdate(message=f"pinned {listing}"))
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
            self._ensure_stager(task_id)  # hand the next queued jobs over while this one runs
            await self._follow(job, lambda: stream, first)
        await self._follow_staged()
        return True

    async def _pin_for(self, job: Job) -> list[PinnedConfig]:
        """Pin the config revisions a job will run with (the config service records the pin)."""
        assert self._pinner is not None
        body = job.payload.body
        revisions, overrides = body.get("config_revisions") or {}, body.get("config_overrides") or {}
        return await self._pinner.pin(job.job_id, revisions, overrides, job.owner)

    async def _follow(
        self,
        job: Job,
        open_stream: Callable[[], AsyncIterator[ExecUpdate]],
        first: ExecUpdate | None = None,
    ) -> None:
        """Apply updates until the run is terminal, re-attaching if the stream breaks. The
        stream is read ahead: whatever has arrived is applied in one store transaction."""
        assert job.current_run is not None
        task_id = job.current_run.task_id
        last_seq = job.current_run.executor_seq
        unreachable_since: float | None = None
        loop = asyncio.get_running_loop()
        reader = _ReadAhead(open_stream(), first)
        try:
            while True:
                try:
                    batch = await reader.next_batch()
                    unreachable_since = None
                    fresh = []
                    for update in batch:
                        if update.seq and update.seq <= last_seq:
                            continue  # replayed on re-attach; already applied
                        last_seq = max(last_seq, update.seq)
                        fresh.append(update)
                        if update.terminal:
                            break
                    if fresh:
                        await self._apply_many(task_id, [to_run_update(u) for u in fresh])
                        if fresh[-1].terminal:
                            return
                    continue
                except StopAsyncIteration:
                    reason = "stream ended before the run finished"
                except ExecutorUnavailable as exc:
                    reason = str(exc)
                except RunNotFound:
                    await self._apply(
                        task_id, _failed("EXECUTOR_LOST", "the executor no longer knows this run")
                    )
                    return
                except ExecutorRejected as exc:
                    await self._apply(task_id, _failed("EXECUTOR_LOST", f"re-attach refused: {exc}"))
                    return
                now = loop.time()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > self._lost_after_s:
                    await self._apply(
                        task_id,
                        _failed(
                            "EXECUTOR_LOST", f"executor unreachable for {self._lost_after_s:.0f}s: {reason}"
                        ),
                    )
                    return
                await asyncio.sleep(RETRY_MIN_S if now == unreachable_since else RETRY_MAX_S)
                await reader.close()
                reader = _ReadAhead(self.executor.attach(task_id, last_seq))
        finally:
            await reader.close()

    async def _apply_many(self, task_id: str, updates: list[RunUpdate]) -> None:
        """Record several updates of a run in one transaction, then tell the watchers."""
        if len(updates) == 1:
            await self._apply(task_id, updates[0])
            return
        for change in await self._call(self._store.update_runs, task_id, updates, self._clock()):
            self._publish(change)
