"""One dispatcher per lab device: keep the executor's run queue filled with what the queue policy
picks, and record what comes back. Claiming a job and staging it ahead of time are one path.

The loop (one long-lived RunQueue stream per device):
- open the queue with a cursor per run the database says is staged or running, and reconcile
  with what the executor holds (`_reconcile`);
- stage: ask the policy for the next runs (as many as fit a ~1 s horizon of typical run time,
  2-64), pin their configs (from the main-revision cache; PinConfigs only for named revisions
  and overrides), record them staged in ONE durable transaction (task ids, pins, reasons), then
  send them with one EnqueueRuns checked against the executor's tail;
- apply each UpdateBatch in one transaction (durable when it holds a terminal result), then tell
  watchers; a terminal result makes room, so staging runs again;
- take staged runs back (WithdrawRuns) when a job that sorts before them arrives, the device is
  held, or a main config they pinned moves; they are queued again in their place.

A job submitted to an idle device is staged in the transaction that inserts it (`claim`), and
handed over when that commits (`claimed`). An executor unreachable for `lost_after_s` fails its
running job EXECUTOR_LOST and keeps the queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from qsched_core.execution import (
    Accepted,
    Cancelled,
    DataRef,
    ExecutionRequest,
    ExecutionUpdate,
    Failed,
    HeldState,
    Output,
    PinnedRevision,
    Progress,
    RunCursor,
    ScheduleDecision,
    Started,
    Succeeded,
    WatchPartials,
)
from qsched_core.health import Problems
from qsched_core.payloads import LabExperiment
from qsched_core.provenance import CodeProvenance
from qsched_scheduler.config_port import ConfigPinner, ConfigsUnavailable, PinRefused
from qsched_scheduler.data_cache import CachedFile, RecentData
from qsched_scheduler.dispatch.run_queue import RunQueue
from qsched_scheduler.domain import (
    CALIBRATION_LABEL,
    PREEMPTED,
    Change,
    ErrorDetail,
    Job,
    JobState,
    LogLines,
    NewJob,
    QueuedJob,
    Reason,
    calibration_needs,
    for_executor,
    lab_experiment,
    pins_main,
    queued_job,
    reservation_of,
    yields_at_safe_points,
)
from qsched_scheduler.estimates import Estimates
from qsched_scheduler.executor_port import ExecutorUnavailable, LabExecutor
from qsched_scheduler.leases import Leases
from qsched_scheduler.live import LiveFeed
from qsched_scheduler.main_revisions import MainMoved, MainRevisions
from qsched_scheduler.policy import DeviceHold, QueuePolicy
from qsched_scheduler.queue_index import DeviceQueue, QueueIndex
from qsched_scheduler.store.base import Claim, Queries, QueueStore, RunLog, RunUpdate, StageRequest
from qsched_scheduler.store.leases import ExecutorSeen, LeaseLost
from qsched_scheduler.store.thread import StoreThread

log = logging.getLogger(__name__)

EXECUTOR_LOST_AFTER_S = 30.0
RETRY_MIN_S = 0.05
RETRY_MAX_S = 2.0
STOP_TIMEOUT_S = 5.0
# Staging: enough runs to cover this much typical run time, within these bounds.
HORIZON_S = 1.0
MIN_STAGED = 2
MAX_STAGED = 64
_NO_EXPERIMENT = LabExperiment("", "")  # "the main revisions": what MainRevisions.pin needs to know
_STAGED = Reason("", "staged before a restart")  # what _reconcile asks the gates about
# What a device lets a running job yield to (between averaging rounds; docs/calibration.md).
YIELD_TO_CALIBRATION = "calibration"
YIELD_TO_PRIORITY = "priority"
YIELD_TRIGGERS = (YIELD_TO_CALIBRATION, YIELD_TO_PRIORITY)
# Replicas: how often the queue is read again for what other replicas committed (submits, cancels).
REFRESH_S = 0.1
REFRESH_IDLE_S = 1.0  # on a replica that does not dispatch the device


def never_yield(device: str) -> frozenset[str]:
    """The default: no device lets a running job be interrupted."""
    return frozenset()


@dataclass
class _OnBoard:
    """A run handed to the executor that has not ended (as far as the scheduler has applied)."""

    task_id: str
    job_id: str
    key: tuple[int, ...]  # its place in the policy's order
    pins_main: bool = True
    started: bool = False  # on the board or past it: no longer to be withdrawn
    # Its start is applied here (the job is RUNNING in the database). Not the same as `started`:
    # a withdraw answered "started" before the run's own `started` update arrived.
    running_here: bool = False
    ended: bool = False  # the executor says it ended; its last updates are on their way
    seq: int = 0  # last update applied
    owner: str = ""  # for orderings that reorder at pick time (fair share)
    priority: int = 0
    yieldable: bool = False  # its job allows yielding at safe points
    calibration: bool = False  # a calibration job (never asked to yield)
    yield_asked: bool = False  # asked to yield; its end is on its way


def _on_board(job: Job, key: tuple[int, ...], **state: object) -> _OnBoard:
    return _OnBoard(
        job.staged_task_id or (job.current_run.task_id if job.current_run else ""),
        job.job_id,
        key,
        pins_main(job.payload),
        owner=job.owner,
        priority=job.priority,
        yieldable=yields_at_safe_points(job.payload),
        calibration=CALIBRATION_LABEL in job.labels,
        **state,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Stores:
    queue: QueueStore
    runs: RunLog
    queries: Queries
    thread: StoreThread


class _View:
    """The policy's view of the device (see policy.QueueView)."""

    def __init__(
        self, device: str, queue: DeviceQueue, hold: DeviceHold | None, on_board: Sequence[str], now: datetime
    ):
        self.device = device
        self.now = now
        self.hold = hold
        self.on_board = on_board
        self._queue = queue

    def waiting(self) -> Iterator[QueuedJob]:
        return self._queue.unstaged()

    def waiting_of(self, owners: frozenset[str]) -> Iterator[QueuedJob]:
        return self._queue.unstaged_of(owners)

    def ahead_of(self, job_id: str) -> int:
        return max(0, self._queue.position(job_id) - 1)

    def queued(self, job_id: str) -> QueuedJob | None:
        """A queued job by id (staged or not): for orderings with their own index (fair share)."""
        return self._queue.get(job_id)


class ConfigPins:
    """What a run pins: the main revisions from memory, else PinConfigs (named revisions, inline
    overrides, or while the main-revision stream is not live). No pinner: nothing is pinned."""

    def __init__(self, mains: MainRevisions | None, pinner: ConfigPinner | None):
        self.mains = mains
        self.pinner = pinner

    def from_memory(self, job: QueuedJob) -> dict[str, str] | None:
        if self.pinner is None:
            return {}
        if self.mains is None or not job.pins_main:
            return None
        pinned = self.mains.pin(_NO_EXPERIMENT)
        return None if pinned is None else {p.config_type: p.revision_id for p in pinned}

    async def by_call(self, job: Job) -> dict[str, str]:
        """Raises ConfigsUnavailable / PinRefused."""
        assert self.pinner is not None
        experiment = lab_experiment(job.payload)
        assert experiment is not None
        pinned = await self.pinner.pin(
            job.job_id, dict(experiment.config_revisions), dict(experiment.config_overrides), job.owner
        )
        return {p.config_type: p.revision_id for p in pinned}

    def hashes(
        self, revisions: dict[str, str], extra: dict[str, str] | None = None
    ) -> tuple[PinnedRevision, ...]:
        out = []
        for config_type, revision_id in sorted(revisions.items()):
            sha = (extra or {}).get(config_type, "")
            main = self.mains.main(config_type) if self.mains is not None else None
            if not sha and main is not None and main.revision_id == revision_id:
                sha = main.sha256
            out.append(PinnedRevision(config_type, revision_id, sha))
        return tuple(out)


def to_run_update(update: ExecutionUpdate) -> RunUpdate:
    body = update.body
    seq = update.seq
    if isinstance(body, Cancelled) and body.preempted:
        then = "continues from them" if body.resumable else "restarts (the experiment cannot continue)"
        why = body.reason or "preempted"
        return RunUpdate(
            seq,
            final_state=JobState.CANCELLED,
            error=ErrorDetail(PREEMPTED, f"{why}; {body.rounds_done} round(s) saved; its next run {then}"),
            message=f"preempted after {body.rounds_done} round(s): {why}; queued again at its place",
            data=body.data,
            summary={"rounds_done": float(body.rounds_done), "resumable": 1.0 if body.resumable else 0.0},
            requeue=True,
        )
    if isinstance(body, Accepted):
        return RunUpdate(seq, message="accepted by the executor")
    if isinstance(body, Started):
        return RunUpdate(seq, started=True, message="started on the device")
    if isinstance(body, Progress):
        detail = f" ({body.rounds_done}/{body.rounds_total} rounds)" if body.rounds_total else ""
        return RunUpdate(seq, progress=body.fraction, message=f"progress {body.fraction:.0%}{detail}")
    if isinstance(body, Output):
        dropped = f", {body.dropped} dropped" if body.dropped else ""
        return RunUpdate(
            seq, message=f"log: {len(body.lines)} line(s){dropped}", log=LogLines(body.lines, body.dropped)
        )
    if isinstance(body, Succeeded):
        return RunUpdate(
            seq,
            final_state=JobState.SUCCEEDED,
            message="succeeded",
            data=body.data,
            summary=dict(body.summary),
            code=body.code,
        )
    if isinstance(body, Cancelled):
        return RunUpdate(
            seq,
            final_state=JobState.CANCELLED,
            error=ErrorDetail("CANCELLED", body.reason or "cancelled"),
            message="cancelled" + (" while running" if body.rounds_done else ""),
            data=body.data,
            code=body.code,
        )
    assert isinstance(body, Failed)
    return failed(body.reason or "RUN_FAILED", body.message, seq, body.code)


def failed(reason: str, message: str, seq: int = 0, code: CodeProvenance | None = None) -> RunUpdate:
    return RunUpdate(
        seq,
        final_state=JobState.FAILED,
        error=ErrorDetail(reason, message),
        message=f"failed: {reason}",
        code=code,
    )


class LabDispatcher:
    def __init__(
        self,
        device: str,
        executor: LabExecutor,
        stores: Stores,
        index: QueueIndex,
        policy: QueuePolicy,
        hold_of: Callable[[str], DeviceHold | None],
        pins: ConfigPins,
        publish: Callable[[Change], None],
        estimates: Estimates,
        clock: Callable[[], datetime],
        lost_after_s: float = EXECUTOR_LOST_AFTER_S,
        problems: Problems | None = None,
        yielding: Callable[[str], frozenset[str]] = never_yield,
        leases: Leases | None = None,
        live: LiveFeed | None = None,
        recent_data: RecentData | None = None,
    ):
        self.device = device
        self._live = live  # where partial data of runs go (live.py); None: dropped
        self._recent_data = recent_data  # small data files that came with results (data_cache.py)
        self._unwatch: Callable[[], None] | None = None
        self._telling = asyncio.Lock()  # WatchPartials in order: the last one sent is the newest set
        # Replicas (leases.py): this dispatcher works only while this replica holds the device's
        # lease; meanwhile it reads the queue again every REFRESH_S for other replicas' changes.
        self._leases = leases
        self._refresher: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._cancels_seen: set[str] = set()
        # A cancel asked on a replica that does not dispatch the device (the engine's cancel).
        self.on_remote_cancel: Callable[[str], Awaitable[None]] | None = None
        self.took_over: list[float] = []  # wall-clock times this replica took the device over
        # What it sees of the executor (ListDevices; with replicas, stored with the lease).
        self.executor_seen = ExecutorSeen("CONNECTING", time.time())
        self._problems = problems  # told while this dispatcher cannot work (the service's health)
        self._failing = False  # it failed since it last reconciled
        self._yielding = yielding  # device -> what a running job may yield to (YIELD_TRIGGERS)
        self._resume: dict[str, DataRef] = {}  # staged task id -> the yielded run's file it continues
        self._yield_for: Job | None = None  # arrived while the next run was starting: looked at again
        self.executor = executor
        self._stores = stores
        self._index = index
        self._policy = policy
        self._hold_of = hold_of
        self._pins = pins
        self._publish = publish
        self._estimates = estimates
        self._clock = clock
        self._lost_after_s = lost_after_s
        self._queue: RunQueue | None = None
        self._on_board: list[_OnBoard] = []  # in start order
        self._lock = asyncio.Lock()  # one change of the executor's queue at a time (the tail)
        self._wake = asyncio.Event()
        self._claims: dict[str, Claim] = {}  # staged by a submit, not yet handed over
        self._deferred: list[ExecutionUpdate] = []  # see _apply
        # Runs the executor lost on the board while they were still staged here (their start had
        # not reached us): their replayed end is applied as a start too (see _apply).
        self._lost_staged: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.connected = asyncio.Event()  # the run queue is open and reconciled

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._pins.mains is not None:
            self._unsubscribe = self._pins.mains.subscribe(self._mains_moved)
        if self._live is not None:
            self._unwatch = self._live.on_watched_changed(self._watched_changed)
        if self._leases is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"dispatch-{self.device}")
            return
        self._leases.add(self.device, self._lease_acquired, self._lease_lost, lambda: self.executor_seen)
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name=f"refresh-{self.device}"
        )

    def dispatches_here(self) -> bool:
        """This process dispatches the device (no replicas, or it holds the device's lease)."""
        return self._leases is None or self._leases.holds(self.device)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._unwatch is not None:
            self._unwatch()
        if self._refresher is not None:
            self._refresher.cancel()
        if self._task is not None:
            self._task.cancel()
        # Closing the channel first ends a call the task may be waiting on (a write on a stream
        # that is still connecting does not notice a cancel): the task then ends.
        await self.executor.close()
        tasks = {t for t in (self._task, self._stopping) if t is not None}
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            if pending:
                log.warning("dispatching to %s did not stop within %g s", self.device, STOP_TIMEOUT_S)

    def wake(self) -> None:
        self._wake.set()

    # -- what the engine tells it --------------------------------------------------------------------------
    def claim(self, new: NewJob) -> Claim | None:
        """A claim for a job about to be inserted, when it would start at once: the device is
        connected, idle and not held, nothing of it is queued, and its configs pin from memory.
        The caller stages it in the inserting transaction, then calls `claimed`."""
        if (
            self._queue is None
            or self._on_board
            or self._claims
            or len(self._index.device(self.device))
            or self._hold_of(self.device) is not None
            or not pins_main(new.payload)
        ):
            return None
        reservation, calibration = reservation_of(new.labels)
        probe = QueuedJob(
            "",
            self.device,
            new.priority,
            0,
            new.owner,
            new.payload.kind,
            "",
            True,
            reservation,
            calibration,
            new.labels.get("session", ""),
            calibration_needs(new.payload),
        )
        idle = Reason(
            self._policy.ordering.name, "the device was idle: claimed at submit", {"priority": new.priority}
        )
        # None when a gate holds it (a reservation window, calibration freshness): it waits in the queue.
        reason = self._policy.admit(probe, self.view(), idle)
        if reason is None:
            return None
        revisions = self._pins.from_memory(probe)
        if revisions is None:
            return None
        claim = Claim(str(uuid.uuid4()), revisions, reason)  # the new job's task id
        self._claims[claim.task_id] = claim
        return claim

    def unclaim(self, claim: Claim) -> None:
        """The inserting transaction did not happen."""
        self._claims.pop(claim.task_id, None)
        self._wake.set()

    async def claimed(self, job: Job) -> None:
        """A job staged at submit (committed): hand it over."""
        claim = self._claims.get(job.staged_task_id)
        try:
            async with self._lock:
                queue = self._queue
                if claim is None or queue is None:
                    return  # the connection's reconcile finds it staged and sorts it out
                await self._hand_over(queue, [job])
        except ExecutorUnavailable as exc:
            log.info("handing %s to %s failed: %s", job.job_id, self.device, exc)
        finally:
            self._claims.pop(job.staged_task_id, None)
            self._wake.set()

    def queued(self, job: Job) -> None:
        """A job joined the queue: runs staged behind its place in the order are taken back."""
        probe = QueuedJob(job.job_id, job.device, job.priority, job.queue_order, job.owner, job.kind)
        key = self._policy.key(probe)
        # An ordering that reorders at pick time (fair share) says which staged runs it overtakes.
        overtakes = getattr(self._policy.ordering, "overtakes", None)

        def behind(r: _OnBoard) -> bool:
            return r.key > key or (overtakes is not None and overtakes(probe, r.owner, r.key))

        # The running run may have to yield to it: after the runs behind it are taken back, so
        # the board does not start one of them in the place the yield makes.
        yielding = self._maybe_yield(job)
        # A batch being staged right now (lock held) may be behind it: look after it too.
        if (
            yielding is not None
            or self._lock.locked()
            or any(not r.started and not r.ended and behind(r) for r in self._on_board)
        ):
            self._spawn(self._withdraw(behind, "a job that runs first arrived", yielding))
        else:
            self._wake.set()

    # -- yielding at safe points ---------------------------------------------------------------------
    def _maybe_yield(self, job: Job) -> tuple[_OnBoard, str] | None:
        """A job joined the queue: the running run is asked to yield between averaging rounds when
        the newcomer is a calibration job (or outranks it: higher priority), the device allows
        yielding to that, the running job allows it, and no gate holds the newcomer now."""
        allowed = self._yielding(self.device)
        if not allowed or job.state is not JobState.QUEUED:
            return None
        running = next((r for r in self._on_board if not r.ended), None)
        if running is None or running.job_id == job.job_id:
            return None
        if not running.running_here:  # handed over, its start not applied yet: decided when it is
            self._yield_for = job
            return None
        if not running.yieldable or running.calibration or running.yield_asked:
            return None
        if CALIBRATION_LABEL in job.labels:
            name = job.labels[CALIBRATION_LABEL]
            named = "" if name.lower() in ("true", "1", "yes") else f" {name}"  # a user's calibration job
            trigger, why = YIELD_TO_CALIBRATION, f"calibration{named} ({job.job_id}) is due"
        elif job.priority > running.priority:
            trigger, why = (
                YIELD_TO_PRIORITY,
                f"{job.job_id} at priority {job.priority} > {running.priority} arrived",
            )
        else:
            return None
        if trigger not in allowed:
            return None
        if self._policy.admit(queued_job(job), self.view(), Reason("", "")) is None:
            return None  # a gate holds it: yielding would only make room for nobody
        running.yield_asked = True
        return running, f"yielded at a safe point: {why}"

    async def _yield_to_staged(self, queue: RunQueue, jobs: list[Job]) -> None:
        """Runs just handed over behind the running one: the running run yields to the first that
        calls for it (lock held). This catches what was held when it joined the queue (a
        recalibration is queued before the calibration manager has registered it, a gate opened)."""
        handed = {r.task_id for r in self._on_board}
        for job in jobs:
            if job.staged_task_id not in handed:
                continue  # refused by the executor
            target = self._maybe_yield(job)
            if target is not None:
                await self._yield(queue, *target)
                return

    async def _yield(self, queue: RunQueue, run: _OnBoard, reason: str) -> None:
        """Ask the run on the board to yield between rounds (lock held)."""
        if run.ended:
            return
        log.info("asking %s (%s) on %s to yield: %s", run.task_id, run.job_id, self.device, reason)
        answer = await queue.cancel([run.task_id], reason, preempt=True)
        if run.task_id in answer.ignored:
            run.yield_asked = False  # it ended (or is ending) anyway

    def hold_changed(self) -> None:
        if self._hold_of(self.device) is not None:
            self._spawn(self._withdraw(lambda r: True, "the device is held"))
        else:
            self._wake.set()

    def reconsider(self, why: str) -> None:
        """A gate's answer may have changed (a reservation window opened, ended, was booked or
        cancelled): staged runs that have not started are taken back and picked again."""
        if any(not r.started and not r.ended for r in self._on_board):
            self._spawn(self._withdraw(lambda r: True, why))
        else:
            self._wake.set()

    def take_back(self, why: str) -> None:
        """Take back every staged run that has not started (a gate may hold them now, e.g. a
        calibration they need went stale); they are queued again in their place and re-decided."""
        self._spawn(self._withdraw(lambda r: True, why))

    def _mains_moved(self, moved: MainMoved) -> None:
        # A batch being staged right now (lock held) may carry the old pins: look after it.
        if self._lock.locked() or any(r.pins_main and not r.started for r in self._on_board):
            self._spawn(
                self._withdraw(lambda r: r.pins_main, f"main moved ({', '.join(sorted(moved.config_types))})")
            )

    async def cancel(self, job: Job, reason: str) -> Job | None:
        """Stop a job's run on the executor. A staged run that has not started is withdrawn (None:
        the caller cancels the queued job); a running one is cancelled (the job is returned)."""
        async with self._lock:
            queue = self._queue
            task_id = job.staged_task_id or (job.current_run.task_id if job.current_run else "")
            if job.state is JobState.QUEUED:
                if queue is not None and job.staged_task_id:
                    answer = await queue.withdraw([task_id])
                    if task_id in answer.started:  # it started meanwhile: cancel the run
                        await queue.cancel([task_id], reason)
                        return job
                    self._forget(task_id)
                self._claims.pop(task_id, None)
                return None
            if queue is not None and task_id:
                await queue.cancel([task_id], reason)
            return job

    def _watched_changed(self) -> None:
        """Tell the executor which jobs' partial data someone watches (it computes only theirs)."""
        queue = self._queue
        if queue is not None and self._live is not None:
            self._spawn(self._tell_watched(queue))

    async def _tell_watched(self, queue: RunQueue) -> None:
        assert self._live is not None
        async with self._telling:
            with contextlib.suppress(ExecutorUnavailable):
                await queue.tell(WatchPartials(self._live.watched_jobs()))

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(_log_failure)

    # -- replicas: the device's lease and the other replicas' changes -----------------------------------
    def _lease_acquired(self) -> None:
        self._spawn(self._take_over())

    def _lease_lost(self) -> None:
        """Stop dispatching at once: the next holder re-attaches to what the database holds."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            self._stopping = task
        self._queue = None
        self.connected.clear()
        self._claims.clear()
        self._on_board = []
        self._deferred = []

    async def _take_over(self) -> None:
        """This replica holds the device now: its queue from the database, then the connection
        (which re-attaches to the staged and running runs exactly as after a restart)."""
        assert self._leases is not None
        self.took_over.append(time.time())
        stopping, self._stopping = self._stopping, None
        if stopping is not None:  # the connection of an earlier tenure: closed before a new one opens
            await asyncio.wait({stopping}, timeout=STOP_TIMEOUT_S)
        jobs = await self._stores.thread.call(self._stores.queries.queued_jobs, self.device)
        if not self._leases.holds(self.device) or (self._task is not None and not self._task.done()):
            return
        self._index.replace_device(self.device, jobs)
        self._cancels_seen = set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"dispatch-{self.device}")

    async def _refresh_loop(self) -> None:
        while True:
            # The holder must see submits and cancels at once; the others only keep their
            # positions and estimates current.
            await self._sleep(REFRESH_S if self.dispatches_here() else REFRESH_IDLE_S)
            try:
                await self._refresh()
            except Exception as exc:  # the store: the next round tries again
                log.warning("reading the queue of %s again failed: %s", self.device, f"{exc}"[:300])

    async def _refresh(self) -> None:
        """What other replicas committed on this device (their submits, cancels and, on a replica
        that does not dispatch it, the holder's staging) into the queue index; the holder then
        takes back staged runs the newcomers overtake, wakes its filler and carries out the
        cancels asked elsewhere."""
        thread, queries = self._stores.thread, self._stores.queries
        signature = await thread.call(queries.queue_signature, self.device)
        holder = self.dispatches_here()
        if holder and self._queue is not None:
            await self._remote_cancels(signature[3])
        # What this replica knows already (the holder stages, so its staged marks are its own).
        local = self._index.device(self.device).signature()
        if signature[:2] == local[:2] and (holder or signature[2] == local[2]):
            return
        before = {job.job_id for job in self._index.device(self.device)}
        touched = self._index.track(self.device)
        try:
            jobs = await thread.call(queries.queued_jobs, self.device)
        finally:
            self._index.untrack(self.device, touched)
        added = self._index.merge(self.device, jobs, before, touched, take_staged=not holder)
        if not holder or self._queue is None:
            return
        if added:
            first = min(self._policy.key(job) for job in added)
            overtakes = getattr(self._policy.ordering, "overtakes", None)

            def behind(r: _OnBoard) -> bool:
                return r.key > first or (
                    overtakes is not None and any(overtakes(job, r.owner, r.key) for job in added)
                )

            if any(not r.started and not r.ended and behind(r) for r in self._on_board):
                self._spawn(self._withdraw(behind, "a job that runs first arrived (another replica)"))
            self._wake.set()

    def cancel_asked_elsewhere(self, job_id: str) -> None:
        """Heard from another replica (replica_events): a cancel asked there, carried out now
        rather than at the next queue read (which then skips it)."""
        if job_id not in self._cancels_seen and self.on_remote_cancel is not None:
            self._cancels_seen.add(job_id)
            self._spawn(self.on_remote_cancel(job_id))

    async def _remote_cancels(self, flagged: int) -> None:
        """Carry out the cancels asked on other replicas (flag_cancel), each once."""
        if not flagged or self.on_remote_cancel is None:
            self._cancels_seen = set()
            return
        asked = await self._stores.thread.call(self._stores.queries.cancel_requests, self.device)
        for job_id in asked:
            if job_id not in self._cancels_seen:
                self._spawn(self.on_remote_cancel(job_id))
        self._cancels_seen = set(asked)

    # -- the connection ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        down_since: float | None = None
        backoff = RETRY_MIN_S
        while True:
            if not self.dispatches_here():
                return  # the lease is gone: opening the queue would take it from its new holder
            try:
                cursors = await self._cursors()
                transport = await self.executor.open_queue()
                queue = await RunQueue.open(transport, cursors)
            except Exception as exc:
                if not isinstance(exc, ExecutorUnavailable):  # the store failing: try again, patiently
                    self._cannot_work(exc, "opening the run queue")
                    await self._sleep(RETRY_MAX_S)
                    continue
                log.info("cannot open the run queue of %s: %s", self.device, exc)
                self._seen("UNREACHABLE", f"{exc}")
                now = loop.time()
                down_since = down_since if down_since is not None else now
                if now - down_since >= self._lost_after_s:
                    await self._lose_running(f"executor unreachable for {self._lost_after_s:.0f}s: {exc}")
                await self._sleep(min(backoff, max(0.0, down_since + self._lost_after_s - now)) or backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            backoff = RETRY_MIN_S
            down_since = None
            try:
                await self._serve(queue)
            except ExecutorUnavailable as exc:
                log.info("run queue of %s ended: %s", self.device, exc)
            except Exception as exc:  # a bug or the store failing: start over from the database
                self._cannot_work(exc, "dispatching")
                await self._sleep(RETRY_MAX_S)
            finally:
                self._queue = None
                self.connected.clear()
                self._seen("CONNECTING")
                await queue.close()
            down_since = loop.time()

    def _seen(self, state: str, message: str = "") -> None:
        if state != self.executor_seen.state:
            self.executor_seen = ExecutorSeen(state, time.time(), message[:500])
        elif message != self.executor_seen.message:
            self.executor_seen = ExecutorSeen(state, self.executor_seen.since, message[:500])

    @property
    def _source(self) -> str:
        return f"dispatch to {self.device}"

    def _cannot_work(self, exc: Exception, doing: str) -> None:
        """Logged with its traceback the first time; while it goes on, one line per attempt."""
        if self._failing:
            log.warning("%s to %s still fails: %s", doing, self.device, f"{exc}"[:300])
        else:
            log.exception("%s to %s failed; trying again from the database", doing, self.device)
        self._failing = True
        if self._problems is not None:
            self._problems.report(self._source, f"{type(exc).__name__}: {exc}"[:500])

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.Event().wait()

    async def _serve(self, queue: RunQueue) -> None:
        async with self._lock:
            await self._reconcile(queue)
            if not self._estimates.known(self.device):
                await self._stores.thread.call(self._estimates.load, self.device)
            self._queue = queue
        self.connected.set()
        if self._live is not None and self._live.watched_jobs():
            self._watched_changed()
        self._seen("CONNECTED")
        self._failing = False
        if self._problems is not None:  # reconciled with the database: it works again
            self._problems.clear(self._source)
        filler = asyncio.get_running_loop().create_task(self._fill_loop(queue))
        self._wake.set()
        try:
            while True:
                batch = await queue.next_batch()
                if batch.partials and self._live is not None:  # before the updates: a run's last
                    ours = {r.task_id for r in self._on_board}  # rounds come before its end
                    for partial in batch.partials:
                        if partial.task_id in ours:
                            self._live.publish(partial)
                await self._apply(batch.updates)
        finally:
            filler.cancel()
            with contextlib.suppress(asyncio.CancelledError, ExecutorUnavailable):
                await filler

    async def _cursors(self) -> list[RunCursor]:
        thread, queries = self._stores.thread, self._stores.queries
        running = [j for j in await thread.call(queries.running_jobs) if j.device == self.device]
        staged = await thread.call(queries.staged_jobs, self.device)
        return [
            RunCursor(j.current_run.task_id, j.current_run.executor_seq)
            for j in running + staged
            if j.current_run
        ]

    async def _reconcile(self, queue: RunQueue) -> None:
        """The executor's queue against the database's: re-attach to what both know; a staged run
        the executor does not know goes back to its place in the queue; a running one it does not
        know (or lost) fails EXECUTOR_LOST; runs only the executor knows are withdrawn/cancelled."""
        thread, stores = self._stores.thread, self._stores
        held = {r.task_id: r for r in queue.opened.runs}
        self._deferred = []  # replayed after the cursors
        self._lost_staged = set()
        log.info(
            "run queue of %s open: %s",
            self.device,
            ", ".join(f"{r.task_id[:8]} {r.state.value}@{r.last_seq}" for r in queue.opened.runs) or "empty",
        )
        running = [j for j in await thread.call(stores.queries.running_jobs) if j.device == self.device]
        staged = await thread.call(stores.queries.staged_jobs, self.device)
        ours: dict[str, _OnBoard] = {}
        lost: list[tuple[str, RunUpdate]] = []
        back: list[str] = []
        for job in running + staged:
            run = job.current_run
            if run is None:
                continue
            h = held.get(run.task_id)
            if h is not None and h.state is HeldState.ENDED and h.last_seq <= run.executor_seq:
                h = None  # it ended and nothing of it is left to replay: the executor lost its end
            if h is not None and h.state is HeldState.LOST and job.state is JobState.RUNNING:
                # On the board when the executor died: whatever its replay says, it did not finish.
                lost.append((run.task_id, failed("EXECUTOR_LOST", "the executor died during the run")))
                continue
            if h is not None and h.state is HeldState.LOST:
                # It reached the board, but its start had not reached us: its replay (ending with the
                # executor's EXECUTOR_LOST) is applied after the run before it ends, as a start.
                self._lost_staged.add(run.task_id)
            if h is None:
                if job.state is JobState.RUNNING:
                    lost.append(
                        (run.task_id, failed("EXECUTOR_LOST", "the executor no longer knows this run"))
                    )
                elif run.task_id not in self._claims:
                    back.append(run.task_id)
                continue
            ours[run.task_id] = _on_board(
                job,
                self._policy.key(
                    QueuedJob(job.job_id, job.device, job.priority, job.queue_order, job.owner, job.kind)
                ),
                started=job.state is JobState.RUNNING or h.state is HeldState.RUNNING,
                running_here=job.state is JobState.RUNNING,
                ended=h.state in (HeldState.ENDED, HeldState.LOST),
                seq=run.executor_seq,
            )
        if lost:
            for change in await thread.call(stores.runs.apply_updates, lost, self._clock()):
                self._publish(change)
        if back:
            await self._unstaged(await thread.call(stores.queue.unstage, back, self._clock()))
        strangers = [r for r in queue.opened.runs if r.task_id not in ours]
        waiting = [r.task_id for r in strangers if r.state is HeldState.WAITING]
        if waiting:
            await queue.withdraw(waiting)
        on_board = [r.task_id for r in strangers if r.state is HeldState.RUNNING]
        if on_board:
            await queue.cancel(on_board, "not a run the scheduler knows")
        self._on_board = [ours[r.task_id] for r in queue.opened.runs if r.task_id in ours]
        if self._hold_of(self.device) is not None:
            await self._take_back(queue, [r for r in self._on_board if not r.started and not r.ended])
            return
        # A gate may hold what was staged before the restart (e.g. a reservation window opened).
        view, by_job = self.view(), {j.job_id: j for j in staged}
        barred = [
            r
            for r in self._on_board
            if not r.started
            and not r.ended
            and r.job_id in by_job
            and self._policy.admit(queued_job(by_job[r.job_id]), view, _STAGED) is None
        ]
        if barred:
            await self._take_back(queue, barred)
        # The scheduler may have died between a job arriving and the runs it overtakes being
        # taken back: what was staged keeps the policy's order only if nothing runs first.
        unordered = self._out_of_order()
        if unordered:
            log.info(
                "taking %d staged run(s) back from %s: out of order after a restart",
                len(unordered),
                self.device,
            )
            await self._take_back(queue, unordered)

    def _out_of_order(self) -> list[_OnBoard]:
        """Staged runs from the first one that a waiting job, or a run staged after it, precedes."""
        staged = [r for r in self._on_board if not r.started and not r.ended]
        overtakes = getattr(self._policy.ordering, "overtakes", None)
        waiting = list(self.view().waiting())

        def precedes(job: QueuedJob, r: _OnBoard) -> bool:
            return self._policy.key(job) < r.key or (overtakes is not None and overtakes(job, r.owner, r.key))

        for i, r in enumerate(staged):
            if any(later.key < r.key for later in staged[i + 1 :]) or any(precedes(j, r) for j in waiting):
                return staged[i:]
        return []

    async def _lose_running(self, message: str) -> None:
        thread, stores = self._stores.thread, self._stores
        running = [j for j in await thread.call(stores.queries.running_jobs) if j.device == self.device]
        updates = [
            (j.current_run.task_id, failed("EXECUTOR_LOST", message)) for j in running if j.current_run
        ]
        if updates:
            for change in await thread.call(stores.runs.apply_updates, updates, self._clock()):
                self._publish(change)
            lost = {task_id for task_id, _ in updates}
            self._on_board = [r for r in self._on_board if r.task_id not in lost]

    # -- staging -------------------------------------------------------------------------------------------
    async def _fill_loop(self, queue: RunQueue) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                async with self._lock:
                    await self._fill(queue)
            except ExecutorUnavailable as exc:
                log.info("handing runs to %s failed: %s", self.device, exc)
                await queue.close()  # the connection starts over (and reconciles)
                return
            except LeaseLost as exc:
                log.warning("not staging on %s: %s", self.device, exc)
                await queue.close()  # this replica stops dispatching the device
                return
            except ConfigsUnavailable as exc:
                log.info("config service unavailable for %s: %s", self.device, exc)
                await self._sleep(RETRY_MAX_S)
                self._wake.set()

    def _depth(self) -> int:
        typical = self._estimates.typical(self.device)
        return max(MIN_STAGED, min(MAX_STAGED, math.ceil(HORIZON_S / max(typical, 1e-6))))

    def view(self) -> _View:
        return _View(
            self.device,
            self._index.device(self.device),
            self._hold_of(self.device),
            [r.job_id for r in self._on_board if not r.ended],
            self._clock(),
        )

    async def _fill(self, queue: RunQueue) -> None:
        if self._claims or queue.closed:
            return  # a submit is handing one over; it wakes us after
        if not self._estimates.known(self.device):
            await self._stores.thread.call(self._estimates.load, self.device)
        waiting = sum(1 for r in self._on_board if not r.started and not r.ended)
        depth = self._depth()
        if waiting > depth // 2:
            return  # refilled in halves: one staging transaction (one fsync) for many runs
        decisions = self._policy.next_runs(self.view(), depth - waiting)
        if not decisions:
            return
        requests: list[StageRequest] = []
        refused: dict[str, PinRefused] = {}
        resumes: dict[str, DataRef] = {}
        for decision in decisions:
            reason = decision.reason
            if decision.job.preempted:  # its last run yielded: continue it (its file and pins) or restart
                job = await self._stores.thread.call(self._stores.queries.get, decision.job.job_id)
                if job is None or job.state is not JobState.QUEUED:
                    continue
                reason, ref, kept = _resumption(job, reason)
                if ref is not None:
                    resumes[job.task_id] = ref  # its next run's id, given when it was queued again
                    requests.append(StageRequest(job.job_id, Claim("", kept, reason)))
                    continue
            revisions = self._pins.from_memory(decision.job)
            if revisions is None:
                job = await self._stores.thread.call(self._stores.queries.get, decision.job.job_id)
                if job is None or job.state is not JobState.QUEUED:
                    continue
                try:
                    revisions = await self._pins.by_call(job)
                except PinRefused as exc:
                    revisions, refused[job.job_id] = {}, exc
                except ConfigsUnavailable:
                    if requests:
                        break  # stage what is pinned; the rest after
                    raise
            # The run takes the job's task id (given at submit, rerun or a yield: Claim("")).
            requests.append(StageRequest(decision.job.job_id, Claim("", revisions, reason)))
        jobs = await self._stores.thread.call(self._stores.queue.stage, requests, self._clock())
        for job in jobs:
            self._index.staged(self.device, job.job_id, job.staged_task_id)
            if job.staged_task_id in resumes:
                self._resume[job.staged_task_id] = resumes[job.staged_task_id]
        if refused:
            failures = [
                (j.staged_task_id, failed(refused[j.job_id].reason, refused[j.job_id].message))
                for j in jobs
                if j.job_id in refused
            ]
            for change in await self._stores.thread.call(
                self._stores.runs.apply_updates, failures, self._clock()
            ):
                self._publish(change)
            jobs = [j for j in jobs if j.job_id not in refused]
        if jobs:
            await self._hand_over(queue, jobs)
            await self._yield_to_staged(queue, jobs)
        self._wake.set()  # look again: more may fit (stops when nothing is picked)

    async def _hand_over(self, queue: RunQueue, jobs: list[Job]) -> None:
        """Send staged jobs with one EnqueueRuns after the executor's tail (lock held)."""
        requests = [self._request(job) for job in jobs]
        tail = next((r.task_id for r in reversed(self._on_board) if not r.ended), "")
        before = list(self._on_board)
        # On board before the answer: their first updates may come ahead of it.
        self._on_board.extend(
            _on_board(
                job,
                self._policy.key(
                    QueuedJob(job.job_id, job.device, job.priority, job.queue_order, job.owner, job.kind)
                ),
            )
            for job in jobs
        )
        answer = await queue.enqueue(tail, requests)
        if answer.queue_moved and answer.tail_task_id == "" and all(r.ended or r.started for r in before):
            answer = await queue.enqueue("", requests)  # the last run ended meanwhile
        if answer.queue_moved:
            for job in jobs:
                self._forget(job.staged_task_id)
            # Not the queue we believed: these go back to the queue, and the connection starts over.
            await self._unstaged(
                await self._stores.thread.call(
                    self._stores.queue.unstage, [j.staged_task_id for j in jobs], self._clock()
                )
            )
            raise ExecutorUnavailable(
                f"the executor's queue moved (tail {answer.tail_task_id!r}, expected {tail!r})"
            )
        accepted = set(answer.accepted)
        for job in jobs:
            if job.staged_task_id not in accepted:
                self._forget(job.staged_task_id)
        if answer.refused:
            updates = [(r.task_id, failed(r.reason or "REFUSED", _refusal(r))) for r in answer.refused]
            for change in await self._stores.thread.call(
                self._stores.runs.apply_updates, updates, self._clock()
            ):
                self._publish(change)

    def _request(self, job: Job) -> ExecutionRequest:
        payload = for_executor(job.payload)
        run = job.current_run
        revisions = dict(run.config_revisions) if run is not None else {}
        return ExecutionRequest(
            job_id=job.job_id,
            task_id=job.staged_task_id,
            owner=job.owner,
            experiment=payload,
            configs=self._pins.hashes(revisions),
            trace_parent=job.trace_parent,
            decision=_decision(run.reason if run is not None else None),
            resume_from=self._resume.get(job.staged_task_id),
        )

    # -- taking back ---------------------------------------------------------------------------------------
    async def _withdraw(
        self, which: Callable[[_OnBoard], bool], why: str, then_yield: tuple[_OnBoard, str] | None = None
    ) -> None:
        """Take back staged runs `which` selects; then ask `then_yield`'s run to yield, if given."""
        async with self._lock:
            queue = self._queue
            if queue is None:
                if then_yield is not None:
                    then_yield[0].yield_asked = False
                return  # reconcile decides when the queue is open again
            targets = [r for r in self._on_board if not r.started and not r.ended and which(r)]
            if targets:
                log.info("taking %d staged run(s) back from %s: %s", len(targets), self.device, why)
                await self._take_back(queue, targets)
            if then_yield is not None:
                await self._yield(queue, *then_yield)
        self._wake.set()

    async def _take_back(self, queue: RunQueue, runs: list[_OnBoard]) -> None:
        answer = await queue.withdraw([r.task_id for r in runs])
        back = list(answer.withdrawn) + list(answer.unknown)
        for task_id in answer.started:
            for r in self._on_board:
                if r.task_id == task_id:
                    r.started = True
        if back:
            for task_id in back:
                self._forget(task_id)
            await self._unstaged(
                await self._stores.thread.call(self._stores.queue.unstage, back, self._clock())
            )

    async def _unstaged(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._index.staged(self.device, job.job_id, "")

    def _forget(self, task_id: str) -> None:
        self._on_board = [r for r in self._on_board if r.task_id != task_id]
        self._resume.pop(task_id, None)

    # -- updates -------------------------------------------------------------------------------------------
    async def _apply(self, updates: Sequence[ExecutionUpdate]) -> None:
        """One batch from the executor, in one transaction (durable if it holds a terminal
        update), then the watchers.

        The executor releases the board before the previous run's data file is written, so the
        next run's `started` can come before the previous run's result. The database keeps one
        running lab job per device: updates of a run that would start while an earlier one is
        still running here wait (in order) until that one's terminal update is applied."""
        items: list[tuple[str, RunUpdate]] = []
        ended_now: set[str] = set()
        by_task = {r.task_id: r for r in self._on_board}
        running = next((r.task_id for r in self._on_board if r.running_here and not r.ended), "")
        pending = [*self._deferred, *updates]
        self._deferred = []
        for update in pending:
            run = by_task.get(update.task_id)
            if run is None or update.seq <= run.seq:
                continue  # not ours (withdrawn, a stranger) or replayed
            waits = any(u.task_id == update.task_id for u in self._deferred)
            # The end of a run lost on the board before its start reached us starts it here too.
            lost_start = update.terminal and update.task_id in self._lost_staged and not run.running_here
            starts = _starts(update) or lost_start
            if waits or (running and running != update.task_id and not run.running_here and starts):
                self._deferred.append(update)
                continue
            run.seq = update.seq
            if isinstance(update.body, Accepted):
                # Only the cursor would move (no event): kept in memory. After a restart the
                # executor replays it from the stored cursor, and it changes nothing then either.
                continue
            if starts or (update.terminal and not run.running_here):
                run.started = run.running_here = True
                running = running or update.task_id
            if update.terminal:
                run.ended = True
                ended_now.add(update.task_id)
                self._lost_staged.discard(update.task_id)
                if running == update.task_id:
                    running = ""
            if self._recent_data is not None:
                self._keep_data(update)
            item = to_run_update(update)
            items.append((update.task_id, replace(item, started=True) if lost_start else item))
        if not items:
            return
        changes = await self._stores.thread.call(self._stores.runs.apply_updates, items, self._clock())
        if ended_now:
            self._on_board = [r for r in self._on_board if r.task_id not in ended_now]
            for task_id in ended_now:
                self._resume.pop(task_id, None)
        for change in changes:
            self._publish(change)
            if change.previous_state is JobState.RUNNING and change.job.state is JobState.QUEUED:
                self.queued(change.job)  # yielded: back at its place, ahead of what was staged behind it
        arrived, self._yield_for = self._yield_for, None
        if arrived is not None and self._index.device(self.device).get(arrived.job_id) is not None:
            late = self._maybe_yield(arrived)  # it came while the run now running was starting
            if late is not None:
                self._spawn(self._withdraw(lambda r: False, "", late))
        if ended_now:
            self._wake.set()
            if self._deferred:
                await self._apply(())

    def _keep_data(self, update: ExecutionUpdate) -> None:
        """A result's inline data file into the cache (before its change is published, so a
        watcher that asked for it finds it with the terminal event)."""
        body = update.body
        if not isinstance(body, Succeeded) or not body.inline_data or body.data is None:
            return
        if len(body.inline_data) == body.data.size_bytes:  # else not the file it names: skip it
            assert self._recent_data is not None
            file = CachedFile(update.task_id, body.data.name, body.data.sha256, body.inline_data)
            self._recent_data.put(file)


def _resumption(job: Job, reason: Reason) -> tuple[Reason, DataRef | None, dict[str, str]]:
    """For a job whose last run yielded: the reason its next run is picked (what it continues, or
    why it restarts), the yielded run's data file to continue from (None: it restarts, pinned as
    any run is), and the config revisions a continuing run keeps (the yielded run's, so every round
    is taken with the same settings)."""
    run = job.current_run
    if run is None or run.error is None or run.error.reason != PREEMPTED:
        return reason, None, {}
    revisions = dict(run.config_revisions)
    rounds = int(run.summary.get("rounds_done", 0))
    details = {
        **reason.details,
        "resume": {"from_task_id": run.task_id, "rounds_saved": rounds, "data_file": run.data_file_path},
    }
    if run.data is not None and run.summary.get("resumable"):
        said = (
            f"resumes after yielding: continues from the {rounds} round(s) of run {run.task_id} "
            f"({run.data.name}), pinned to the same revisions"
        )
        return Reason(reason.policy, f"{reason.summary}; {said}", details), run.data, revisions
    said = f"restarts after yielding: run {run.task_id} left nothing it can continue from"
    details["resume"]["restart"] = True
    return Reason(reason.policy, f"{reason.summary}; {said}", details), None, {}


def _starts(update: ExecutionUpdate) -> bool:
    """An update that makes a staged run the device's running one."""
    return isinstance(update.body, (Started, Progress))


def _refusal(refused) -> str:  # type: ignore[no-untyped-def]
    text = refused.message
    if refused.violations:
        text += ": " + "; ".join(f"{v.field}: {v.description}" for v in refused.violations)
    return text


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, ExecutorUnavailable):
            log.info("run queue command not delivered: %s", exc)
        else:
            log.error("dispatcher task failed", exc_info=exc)


def _decision(reason: Reason | None) -> ScheduleDecision | None:
    """The run's reason as the executor writes it into the data file (as GetJob shows it)."""
    if reason is None:
        return None
    return ScheduleDecision(reason.policy, reason.summary, json.dumps(reason.details, sort_keys=True))
