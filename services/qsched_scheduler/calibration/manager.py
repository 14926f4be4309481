"""Runs the calibration chains of every lab device.

- The gate (gate.py) asks `hold(job, device, now)` when the policy considers a queued job. A job
  that needs a calibration (its own `calibrations`, or the device defaults: definitions marked
  `required`) that is not fresh waits, and the stale part of its chain is queued once as
  recalibration jobs (dependencies first, at the top priority, owned by the calibrator principal):
  every waiting job shares them. A calibration job itself waits only for its dependencies.
- A recalibration never interrupts a run: it is a queued job like any other and starts between
  runs (the dispatcher takes back staged runs that sort after it).
- When a calibration job ends (`observe`, a listener of the change feed), its fit results are
  checked (definitions.check). A pass pushes the updates as the new main hardware_config (as the
  calibrator, recording the job) and the calibration is fresh once the main-revision cache shows
  that revision, so the released jobs are pinned to it. A failure leaves main alone, marks the
  calibration FAILED (visible in `qsched calibrations`, logged as an operator alert) and, with
  `on_failure: fail`, cancels the jobs waiting on it; with `hold` they wait for an operator's
  `qsched calibrate NAME`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from qsched_core.clock import utcnow
from qsched_core.payloads import LabExperiment
from qsched_scheduler.calibration import definitions as defs
from qsched_scheduler.calibration.configs_port import HARDWARE_CONFIG, CalibrationConfigs
from qsched_scheduler.calibration.state import CalibrationState, CalibrationStore, Status
from qsched_scheduler.domain import (
    MAX_PRIORITY,
    Change,
    ErrorDetail,
    Job,
    JobFilter,
    JobKind,
    JobState,
    ListView,
    Payload,
    QueuedJob,
    Reason,
)
from qsched_scheduler.errors import InvalidArgument, NotFound
from qsched_scheduler.main_revisions import MainMoved, MainRevisions
from qsched_scheduler.policy import QueueView
from qsched_scheduler.validation import Submission

log = logging.getLogger(__name__)

GATE = "calibration-freshness"
CALIBRATOR = "svc-calibrator"  # the service principal calibration jobs and config pushes are made by
LABEL = "calibration"
FAILED_REASON = "CALIBRATION_FAILED"  # a waiting job's error when its chain failed (on_failure: fail)
PERIODIC_CHECK_S = 1.0  # how often expiry and periodic calibrations are looked at


class Engine(Protocol):
    """What the manager uses of the scheduler (Scheduler satisfies it)."""

    async def submit(self, submission: Submission) -> Any: ...

    async def cancel(self, job_id: str, reason: str = "") -> Job: ...

    async def fail_queued(self, job_id: str, error: ErrorDetail) -> Job | None: ...

    async def get(self, job_id: str) -> Job: ...

    def wake(self, device: str) -> None: ...

    def queued_on(self, device: str) -> Iterable[QueuedJob]: ...

    def lab_devices(self) -> list[str]: ...

    def take_back(self, device: str, why: str) -> None: ...

    async def list_jobs(self, flt: JobFilter, page_size: int, page_token: str) -> tuple[list[Job], str]: ...


Run = Callable[..., Awaitable[Any]]  # runs a blocking store call off the loop


class Calibrations:
    def __init__(
        self,
        store: CalibrationStore,
        configs: CalibrationConfigs | None = None,
        mains: MainRevisions | None = None,
        definitions: defs.Definitions | None = None,
        owner: str = CALIBRATOR,
        clock: Callable[[], datetime] = utcnow,
        check_s: float = PERIODIC_CHECK_S,
    ):
        self._clock = clock
        self._check_s = check_s  # how often the periodic task calls tick()
        self._store = store
        self._configs = configs
        self._mains = mains
        self.definitions = definitions or defs.Definitions()
        self.owner = owner
        self._states: dict[tuple[str, str], CalibrationState] = {}
        self._jobs: dict[str, tuple[str, str]] = {}  # active calibration job -> (device, name)
        self._active: set[tuple[str, str]] = set()  # queued, running or being applied
        self._awaiting_main: dict[tuple[str, str], str] = {}  # pushed revision not yet in the cache
        self._engine: Engine | None = None
        self._run: Run | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The gate's answers for user jobs, by what they need, while nothing changed and `now` is the
        # same: one policy walk asks once per kind of job, not once per queued job.
        self._version = 0
        self._memo: dict[tuple[str, tuple[tuple[str, float], ...]], Reason | None] = {}
        self._memo_at: tuple[int, datetime] | None = None
        self._rest_memo: dict[str, tuple[tuple[int, datetime] | None, bool]] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._known_stale: dict[str, set[str]] = {}  # per device: required calibrations seen stale
        # The start of the `calibration` reservation window open on a device now, if any
        # (set by the scheduler's wiring from the calendar; None: no calendar).
        self.window_start: Callable[[str, datetime], datetime | None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self, engine: Engine, run: Run) -> None:
        """Load the states and the definitions; pick up calibration jobs a restart left behind."""
        self._engine, self._run = engine, run
        for state in await run(self._store.calibration_states):
            self._states[(state.device, state.name)] = state
            self._version += 1  # what the gate answered may have changed
        if self._mains is not None:
            self._unsubscribe = self._mains.subscribe(self._mains_moved)
        await self.reload_definitions()
        for state in list(self._states.values()):
            if state.status is Status.RUNNING and state.job_id:
                self._jobs[state.job_id] = (state.device, state.name)
                self._version += 1
                self._active.add((state.device, state.name))
                self._version += 1  # what the gate answered may have changed
                try:
                    job = await engine.get(state.job_id)
                except NotFound:
                    job = None
                if job is None or job.state.terminal:
                    self._spawn(self._finished(state.job_id, job))
        await self._adopt_open_jobs(engine)
        self._spawn(self._periodic())

    # -- periodic calibration ---------------------------------------------------------------------------
    def tick(self) -> list[tuple[str, str]]:
        """Queue every periodic calibration (`every_s`) whose last pass is that old, and every
        `in_windows` one that has not passed since the `calibration` window open on its device began,
        with its stale dependencies first, on every lab device; the (device, name) pairs queued. The
        periodic task calls it, and the calendar when a window opens; tests call it after moving
        the clock."""
        if self._engine is None:
            return []
        now = self._clock()
        queued: list[tuple[str, str]] = []
        self._expired(now)
        for device in self._engine.lab_devices():
            window = self.window_start(device, now) if self.window_start is not None else None
            for cal in self.definitions.calibrations.values():
                if not cal.on(device):
                    continue
                passed = self.state(device, cal.name).passed_time
                periodic = bool(cal.every_s) and (
                    passed is None or (now - passed).total_seconds() >= cal.every_s
                )
                in_window = cal.in_windows and window is not None and (passed is None or passed < window)
                if not (periodic or in_window) or (device, cal.name) in self._active:
                    continue
                chain = self.definitions.chain([cal.name])
                names = [n for n in chain[:-1] if not self._fresh(device, n, now)] + [cal.name]
                queued += [(device, n) for n in self.request(device, names)]
        return queued

    def _expired(self, now: datetime) -> None:
        """A calibration every job of a device needs went stale: runs staged on the executor before
        that have not started go back to the queue, so the gate decides them again (they would
        otherwise start on the stale calibration)."""
        assert self._engine is not None
        for device in self._engine.lab_devices():
            required = self.definitions.chain(self.definitions.required_on(device))
            stale = {n for n in required if not self.state(device, n).fresh_at(now)}
            newly = stale - self._known_stale.get(device, set())
            self._known_stale[device] = stale
            if newly:
                self._version += 1  # what the gate answered may have changed
                self._engine.take_back(device, f"calibration {', '.join(sorted(newly))} went stale")

    async def _periodic(self) -> None:
        while True:
            periods = [c.every_s for c in self.definitions.calibrations.values() if c.every_s]
            # Often enough to catch a calibration expiring with runs staged behind the running one.
            await asyncio.sleep(
                min(PERIODIC_CHECK_S, max(0.2, min(periods) / 10)) if periods else PERIODIC_CHECK_S
            )
            try:
                for device, name in self.tick():
                    log.info("periodic recalibration of %s on %s", name, device)
            except Exception:  # a bug must not end the periodic task
                log.exception("periodic calibration check failed")

    async def _adopt_open_jobs(self, engine: Engine) -> None:
        """Recalibration jobs queued or running that no state names (the scheduler stopped between
        queuing one and recording it): follow them like the others."""
        token = ""
        while True:
            jobs, token = await engine.list_jobs(
                JobFilter(view=ListView.QUEUE, owner=self.owner), 1000, token
            )
            for job in jobs:
                name = job.labels.get(LABEL, "")
                if name and job.job_id not in self._jobs and not job.state.terminal:
                    self._jobs[job.job_id] = (job.device, name)
                    self._active.add((job.device, name))
                    self._version += 1  # what the gate answered may have changed
                    await self._put(
                        replace(self.state(job.device, name), status=Status.RUNNING, job_id=job.job_id)
                    )
            if not token:
                return

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._configs is not None:
            await self._configs.close()

    async def reload_definitions(self) -> defs.Definitions:
        """The main revision of the `calibrations` config type (kept when it cannot be read)."""
        if self._configs is None:
            return self.definitions
        try:
            found = await self._configs.definitions()
        except Exception as exc:  # the config service down or the file broken: keep what we have
            log.warning("calibration definitions not loaded: %s", exc)
            return self.definitions
        if found is not None and found.revision_id != self.definitions.revision_id:
            try:
                self.definitions = defs.parse(found.content, found.revision_id)
                self._version += 1  # what the gate answered may have changed
            except InvalidArgument as exc:  # a broken file must not stop the queue: keep the last good one
                log.error("CALIBRATION ALERT: definitions %s refused: %s", found.revision_id, exc)
                return self.definitions
            log.info(
                "calibration definitions %s: %s", found.revision_id, ", ".join(self.definitions.calibrations)
            )
        return self.definitions

    # -- reads ---------------------------------------------------------------------------------------
    def states(self, device: str = "") -> list[CalibrationState]:
        """Every defined calibration of every (or one) device, with what is known of it."""
        out = dict(self._states)
        for dev in {d for d, _ in out} | ({device} if device else set()):
            for cal in self.definitions.calibrations.values():
                if cal.on(dev):
                    out.setdefault((dev, cal.name), CalibrationState(dev, cal.name))
        return [s for key, s in sorted(out.items()) if not device or key[0] == device]

    def state(self, device: str, name: str) -> CalibrationState:
        return self._states.get((device, name)) or CalibrationState(device, name)

    def is_calibration_job(self, job_id: str) -> bool:
        return job_id in self._jobs

    # -- the gate ------------------------------------------------------------------------------------
    def needs(self, job: QueuedJob, device: str) -> dict[str, float]:
        """The calibrations a job needs (name -> oldest accepted age in seconds, 0: the definition's)."""
        out = dict.fromkeys(self.definitions.required_on(device), 0.0)
        for name, max_age in job.calibrations:
            out[name] = max_age
        return out

    def hold(self, job: QueuedJob, device: str, now: datetime) -> Reason | None:
        """Why `job` may not start now for calibration reasons (None: it may). Queues what is stale."""
        if job.kind is not JobKind.LAB_EXPERIMENT:
            return None
        if job.owner == self.owner:
            return self._hold_calibration_job(job, device, now)
        if self._memo_at != (self._version, now):
            self._memo.clear()
            self._memo_at = (self._version, now)
        key = (device, job.calibrations)
        if key in self._memo:
            return self._memo[key]
        reason = self._hold_user_job(job, device, now)
        if self._memo_at == (self._version, now):  # (asking may have queued a chain: then ask again)
            self._memo[key] = reason
        return reason

    def holds_rest(self, job: QueuedJob, view: QueueView) -> bool:
        """Whether nothing queued behind `job` (a held user job) can pass either: a calibration every
        user job of the device needs is not fresh, and no recalibration of the device waits behind
        `job` (each is handed over, or ahead of it in the order). The policy then stops walking the
        queue: a dispatch costs about the same with 10 or 10,000 held jobs."""
        if job.owner == self.owner:
            return False
        device, now = view.device, view.now
        if self._memo_at != (self._version, now):
            self._memo.clear()
            self._memo_at = (self._version, now)
        if self._rest_memo.get(device, (None, False))[0] != self._memo_at:
            required = self.definitions.chain(self.definitions.required_on(device))
            blocked = any(not self._fresh(device, n, now) for n in required)
            self._rest_memo[device] = (self._memo_at, blocked)
        if not self._rest_memo[device][1]:
            return False
        jobs = {key: job_id for job_id, key in self._jobs.items()}
        handed = set(view.on_board)
        place = view.ahead_of(job.job_id)
        for key in self._active:
            if key[0] != device:
                continue
            cal_job = jobs.get(key)
            if cal_job is None:
                return False  # being submitted: it may land anywhere
            if cal_job not in handed and view.ahead_of(cal_job) >= place:
                return False
        return True

    def _hold_user_job(self, job: QueuedJob, device: str, now: datetime) -> Reason | None:
        needs = self.needs(job, device)
        if not needs:
            return None
        unknown = sorted(n for n in needs if self.definitions.get(n) is None)
        if unknown:
            return Reason(
                GATE, f"needs calibration(s) not defined: {', '.join(unknown)}", {"unknown": unknown}
            )
        stale = [
            n for n in self.definitions.chain(needs) if not self._fresh(device, n, now, needs.get(n, 0.0))
        ]
        if not stale:
            return None
        first = stale[0]
        state = self.state(device, first)
        if state.status is Status.FAILED and (device, first) not in self._active:
            return Reason(
                GATE,
                f"calibration {first} failed: {state.last_error}; held until it passes "
                f"(an operator runs `qsched calibrate {first} --device {device}`)",
                {"calibration": first, "status": "FAILED", "job_id": state.job_id},
            )
        self.request(device, stale, ages={n: needs.get(n, 0.0) for n in stale})
        return Reason(GATE, self._why_stale(device, first, now), {"calibration": first, "chain": stale})

    def _hold_calibration_job(self, job: QueuedJob, device: str, now: datetime) -> Reason | None:
        entry = self._jobs.get(job.job_id)
        if entry is None:
            return Reason(GATE, "a calibration job not registered yet")
        cal = self.definitions.get(entry[1])
        for dep in cal.depends_on if cal is not None else ():
            if not self._fresh(device, dep, now):
                return Reason(GATE, f"calibration {entry[1]} waits for {dep} first", {"calibration": dep})
        return None

    def _fresh(self, device: str, name: str, now: datetime, max_age_s: float = 0.0) -> bool:
        key = (device, name)
        return key not in self._awaiting_main and self.state(device, name).fresh_at(now, max_age_s)

    def _why_stale(self, device: str, name: str, now: datetime) -> str:
        state = self.state(device, name)
        if (device, name) in self._awaiting_main:
            why = f"its new hardware config {self._awaiting_main[(device, name)]} is not main here yet"
        elif state.passed_time is None:
            why = "never calibrated"
        elif state.fresh_until is not None and now >= state.fresh_until:
            why = f"stale since {state.fresh_until:%Y-%m-%d %H:%M:%S} UTC"
        else:
            why = "older than this job accepts"
        running = (
            f"; recalibration {state.job_id} queued"
            if state.job_id and state.status is Status.RUNNING
            else ""
        )
        return f"waits for calibration {name} on {device}: {why}{running}"

    # -- queuing recalibrations ---------------------------------------------------------------------------
    def request(
        self, device: str, names: list[str], force: bool = False, ages: dict[str, float] | None = None
    ) -> list[str]:
        """Queue recalibration jobs for `names` (in this order) unless one is active already; a
        FAILED calibration is retried only when forced (an operator). Returns those queued."""
        todo = [
            n
            for n in names
            if (device, n) not in self._active
            and (device, n) not in self._awaiting_main  # passed: its revision is on its way
            and (force or self.state(device, n).status is not Status.FAILED)
        ]
        if not todo:
            return []
        for name in todo:
            self._active.add((device, name))
            self._version += 1  # what the gate answered may have changed
        self._spawn(self._submit_chain(device, todo))
        return todo

    async def calibrate(self, device: str, name: str, now: datetime) -> list[str]:
        """`qsched calibrate NAME`: run it now, with its stale (or failed) dependencies first."""
        await self.reload_definitions()
        if self.definitions.get(name) is None:
            raise NotFound("CALIBRATION_NOT_FOUND", f"no calibration {name!r} is defined", calibration=name)
        chain = self.definitions.chain([name])
        names = [n for n in chain[:-1] if not self._fresh(device, n, now)] + [name]
        return self.request(device, names, force=True)

    async def _submit_chain(self, device: str, names: list[str]) -> None:
        assert self._engine is not None
        for i, name in enumerate(names):
            cal = self.definitions.get(name)
            if cal is None:
                self._active.discard((device, name))
                self._version += 1  # what the gate answered may have changed
                continue
            experiment = LabExperiment(
                cal.experiment_class, cal.experiment_module, json.dumps(dict(cal.settings))
            )
            submission = Submission(
                device,
                Payload.of(experiment),
                MAX_PRIORITY,
                self.owner,
                labels={LABEL: name},
            )
            try:
                job = (await self._engine.submit(submission)).job
            except Exception as exc:
                for rest in names[i:]:
                    self._active.discard((device, rest))
                    self._version += 1  # what the gate answered may have changed
                    await self._failed(device, rest, "", f"the recalibration job was not accepted: {exc}")
                return
            self._jobs[job.job_id] = (device, name)
            self._version += 1
            await self._put(replace(self.state(device, name), status=Status.RUNNING, job_id=job.job_id))
            log.info("recalibration of %s on %s queued as %s", name, device, job.job_id)
        self._engine.wake(device)

    # -- results -------------------------------------------------------------------------------------
    def observe(self, change: Change) -> None:
        """A change feed listener: a calibration job ended."""
        job = change.job
        if job.job_id in self._jobs and job.state.terminal and change.previous_state is not job.state:
            self._spawn(self._finished(job.job_id, job))

    async def _finished(self, job_id: str, job: Job | None) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is None:
            return  # handled already
        device, name = entry
        self._version += 1
        try:
            cal = self.definitions.get(name)
            if job is None or cal is None:
                await self._failed(device, name, job_id, "the calibration job is gone")
                return
            run = job.current_run
            if job.state is not JobState.SUCCEEDED or run is None:
                error = job.error.message if job.error else job.state.value.lower()
                await self._failed(device, name, job_id, f"run {job.state.value.lower()}: {error}")
                return
            verdict = defs.check(cal, run.summary)
            if not verdict.passed:
                await self._failed(
                    device, name, job_id, "acceptance check failed: " + "; ".join(verdict.problems)
                )
                return
            revision = ""
            if self._configs is not None and verdict.updates:
                try:
                    pushed = await self._configs.push_updates(verdict.updates, job_id, name)
                except Exception as exc:
                    await self._failed(device, name, job_id, f"pushing the new hardware config failed: {exc}")
                    return
                revision = pushed.revision_id
                if self._mains is not None and not self._main_is(revision):
                    self._awaiting_main[(device, name)] = revision
                    self._version += 1  # what the gate answered may have changed
            now = self._clock()
            await self._put(
                replace(
                    self.state(device, name),
                    status=Status.FRESH,
                    job_id=job_id,
                    last_run_time=now,
                    passed_time=now,
                    fresh_until=now + timedelta(seconds=cal.fresh_for_s),
                    revision_id=revision,
                    values={k: float(v) for k, v in run.summary.items()},
                    failures=0,
                    last_error="",
                )
            )
            log.info(
                "calibration %s on %s passed (%s); hardware config %s",
                name,
                device,
                job_id,
                revision or "unchanged",
            )
        finally:
            self._active.discard((device, name))
            self._version += 1  # what the gate answered may have changed
            if self._engine is not None:
                self._engine.wake(device)

    async def _failed(self, device: str, name: str, job_id: str, error: str) -> None:
        state = self.state(device, name)
        await self._put(
            replace(
                state,
                status=Status.FAILED,
                job_id=job_id or state.job_id,
                last_run_time=self._clock(),
                failures=state.failures + 1,
                last_error=error,
            )
        )
        # The operator alert: main is untouched and the jobs needing it wait (or are cancelled).
        log.warning(
            "CALIBRATION ALERT: %s on %s failed (%s): %s; main hardware config left alone",
            name,
            device,
            job_id or "-",
            error,
        )
        if self._engine is None:
            return
        for dependent, (dev, dep_name) in list(self._jobs.items()):
            cal = self.definitions.get(dep_name)
            if dev == device and cal is not None and name in self.definitions.chain(cal.depends_on):
                await self._cancel(dependent, f"calibration {name} it depends on failed")
        if self.definitions.failure_mode(device) == "fail":
            for queued in list(self._engine.queued_on(device)):
                if queued.owner != self.owner and name in self.definitions.chain(self.needs(queued, device)):
                    failure = ErrorDetail(FAILED_REASON, f"calibration {name} it needs failed: {error}")
                    if await self._engine.fail_queued(queued.job_id, failure) is None:
                        log.info("%s was no longer queued when calibration %s failed", queued.job_id, name)

    async def _cancel(self, job_id: str, reason: str) -> None:
        assert self._engine is not None
        try:
            await self._engine.cancel(job_id, reason)
        except Exception as exc:  # it ended meanwhile
            log.info("cancelling %s after a failed calibration: %s", job_id, exc)

    async def _put(self, state: CalibrationState) -> None:
        self._states[(state.device, state.name)] = state
        self._version += 1  # what the gate answered may have changed
        if self._run is not None:
            await self._run(self._store.put_calibration_state, state)
        else:
            self._store.put_calibration_state(state)

    # -- the main hardware config ------------------------------------------------------------------------
    def _main_is(self, revision_id: str) -> bool:
        main = self._mains.main(HARDWARE_CONFIG) if self._mains is not None else None
        return main is not None and main.revision_id == revision_id

    def _mains_moved(self, moved: MainMoved) -> None:
        if defs.CONFIG_TYPE in moved.config_types:  # new definitions: read them, look at the queues again
            self._spawn(self._definitions_moved())
        if HARDWARE_CONFIG not in moved.config_types:
            return
        for key, revision in list(self._awaiting_main.items()):
            if self._main_is(revision):
                del self._awaiting_main[key]
                self._version += 1  # what the gate answered may have changed
                if self._engine is not None:
                    self._engine.wake(key[0])

    async def _definitions_moved(self) -> None:
        await self.reload_definitions()
        if self._engine is not None:
            for device in self._engine.lab_devices():
                self._engine.wake(device)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("calibration task failed", exc_info=task.exception())
