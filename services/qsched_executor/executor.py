"""The hardware executor's domain logic: the board queue of the one board this process owns.

The scheduler appends runs to the queue (`enqueue`, checked against the tail it expects); the
board thread takes the next waiting run the moment the previous one returns, with no round
trip to the scheduler. A run's data file is written by the writer pool (writers.py) while the
board already runs the next one, and its terminal update follows the write. Every update of
every run goes to the open run queue (`QueueSession`), in order; runs outlive it.

Threads: the event loop owns the runs and their logs (runs.py) and the queue session; the
board thread runs experiments; writer callbacks come from the pool. They hand updates to the
loop with `call_soon_threadsafe`. The waiting runs and the run on the board are shared with
the board thread under `_cond`."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import queue
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import qick
from opentelemetry.trace import Span, Status, StatusCode

from qsched_core.errors import Aborted, DomainError
from qsched_core.execution import (
    INLINE_BATCH_MAX_BYTES,
    Accepted,
    BoardInfo,
    Cancelled,
    Cancelling,
    CancelRuns,
    DataRef,
    Enqueued,
    EnqueueRuns,
    ExecutionRequest,
    ExecutionUpdate,
    Failed,
    OpenQueue,
    PartialData,
    PinnedRevision,
    Progress,
    QueueEvent,
    QueueOpened,
    RefusedRun,
    ScheduleDecision,
    Series,
    Started,
    Succeeded,
    UpdateBatch,
    UpdateBody,
    Validated,
    WatchPartials,
    Withdrawn,
    WithdrawRuns,
)
from qsched_core.payloads import LabExperiment
from qsched_core.provenance import CodeProvenance, ResolvedRevision
from qsched_core.tracing import context_from_traceparent, tracer
from qsched_executor.configs_client import HARDWARE_CONFIG, PinnedConfigs
from qsched_executor.errors import InvalidRequest, RunNotFound
from qsched_executor.experiment_code import ExperimentSources, builtin_code
from qsched_executor.journal import Journal
from qsched_executor.leftovers import lost_run_data, remove_partial_files
from qsched_executor.output import PartialSlot
from qsched_executor.runs import Run, RunRegistry
from qsched_executor.seed_compat import SeedConfigError, find_seed_experiment
from qsched_executor.seed_compat import provenance as seed_provenance
from qsched_executor.validation import ValidationCache, cache_key
from qsched_executor.writers import DataWriters
from qsched_hardware.board import Board, RunCancelled
from qsched_hardware.board import Progress as BoardProgress
from qsched_hardware.datafile import code_attrs, file_sha256, run_file_name
from qsched_hardware.experiments import Experiment, ExperimentResult, RunContext, SavedRounds, Violation
from qsched_hardware.hwconfig import load_hardware_config, sha256_hex

log = logging.getLogger(__name__)
PROGRESS_MIN_INTERVAL_S = 0.1  # at most ~10 progress updates per second
PARTIAL_MIN_INTERVAL_S = 0.05  # at most ~20 partials per second leave the board thread
MAX_PARTIAL_POINTS = 10_000  # a longer array is left out of partial data
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How long `enqueue` waits at most for an idle board thread to take its run before the event loop
# goes on (it takes ~0.05 ms; only a stuck thread would make it wait this long).
HANDOFF_WAIT_S = 0.005


@dataclass(frozen=True)
class Settings:
    data_root: Path
    hardware_config: Path | None = None
    experiment_packages: tuple[str, ...] = ()
    state_dir: Path | None = None  # where the crash journal lives (None: no journal)
    data_writers: int = 0  # writer processes; 0 = one thread of this process
    # Where experiment classes come from (built-ins, the experiment repository, installed
    # packages); None = built-ins and `experiment_packages`, no repository.
    sources: ExperimentSources | None = None


@dataclass
class HardwareConfigUsed:
    config: dict[str, Any]
    sha256: str
    revision_id: str = ""  # empty: the local file
    source: str = ""
    pinned: list[dict[str, str]] = field(default_factory=list)


class InvalidExperimentError(InvalidRequest):
    def __init__(self, violations: list[Violation] | tuple[Violation, ...]):
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__("INVALID_EXPERIMENT", f"the experiment cannot run: {text}")
        self.violations = tuple(violations)


class QueueReopened(Aborted):
    """This run queue was replaced by a newer one (a restarted scheduler took over)."""


@dataclass
class _Item:
    """A run ready for the board."""

    run: Run
    request: ExecutionRequest
    experiment: Experiment
    hw: HardwareConfigUsed
    code: CodeProvenance | None = None  # the code the experiment is (data file, terminal update)
    resume: _Resume | None = None  # the run continues (or restarts) a yielded one


@dataclass
class _Resume:
    """What a run that continues a yielded one (ExecutionRequest.resume_from) takes over."""

    name: str  # the yielded run's data file
    saved: SavedRounds | None  # None: it restarts
    note: str  # "continued" or "restarted: why" (recorded in the data file)
    segments: list[dict[str, Any]] = field(default_factory=list)  # rounds_by_run of the saved file


# A run that returned from the board, its data file still to be written: (item, result, started,
# ended). A plain tuple: it is built between two runs.
_Finished = tuple[_Item, ExperimentResult, float, float]


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class QueueSession:
    """One opened run queue: the events for its stream, in the order they happened. An answer
    follows the updates its command caused."""

    def __init__(self) -> None:
        self._events: list[ExecutionUpdate | QueueEvent | BaseException] = []
        self._ready = asyncio.Event()
        self.replaced = False
        # Live output: the latest partial data per run, until sent (a newer one replaces it).
        self.partials: dict[str, PartialSlot] = {}
        self.partials_replaced = 0  # replaced before the stream could take them

    def push(self, event: ExecutionUpdate | QueueEvent | BaseException) -> None:
        self._events.append(event)
        self._ready.set()

    def offer_partial(self, partial: PartialData) -> None:
        slot = self.partials.setdefault(partial.task_id, PartialSlot())
        self.partials_replaced += slot.held
        slot.put(partial)
        self._ready.set()

    def _take_partials(self) -> tuple[PartialData, ...]:
        """The partials waiting to be sent; their slots go (a run's last one goes out even when
        its terminal update follows at once: it is in the same batch, before it)."""
        out = [p for p in (slot.take() for slot in self.partials.values()) if p is not None]
        self.partials.clear()
        return tuple(out)

    def replace(self) -> None:
        self.replaced = True
        self._ready.set()

    async def next(self) -> list[QueueEvent]:
        """Everything pending (consecutive updates in one batch); waits while there is nothing.
        Raises QueueReopened once a newer queue replaced this one."""
        while not self._events and not self.replaced and not self.partials:
            self._ready.clear()
            await self._ready.wait()
        if self.replaced:
            raise QueueReopened("QUEUE_REOPENED", "a newer RunQueue replaced this one")
        events, self._events = self._events, []
        partials = self._take_partials()
        out: list[QueueEvent] = []
        batch: list[ExecutionUpdate] = []
        inline = 0  # bytes of data files in `batch` (INLINE_BATCH_MAX_BYTES)
        for event in events:
            if isinstance(event, ExecutionUpdate):
                body = event.body
                if isinstance(body, Succeeded) and body.inline_data:
                    inline += len(body.inline_data)
                    if inline > INLINE_BATCH_MAX_BYTES:  # this one goes without: fetched if asked
                        inline -= len(body.inline_data)
                        event = replace(event, body=replace(body, inline_data=b""))
                batch.append(event)
                continue
            if batch:
                out.append(UpdateBatch(tuple(batch)))
                batch = []
                inline = 0
            if isinstance(event, BaseException):
                raise event
            out.append(event)
        if batch or partials:
            out.append(UpdateBatch(tuple(batch), partials))
        return out


class HardwareExecutor:
    def __init__(self, board: Board, settings: Settings, pinned: PinnedConfigs | None = None):
        self.board = board
        self.settings = settings
        self.pinned = pinned
        self.runs = RunRegistry()
        self.validations = ValidationCache()
        self.sources = settings.sources or ExperimentSources(settings.experiment_packages)
        self._hw_cache: dict[Any, HardwareConfigUsed] = {}
        self._writers = DataWriters(settings.data_writers)
        self._session: QueueSession | None = None
        self._enqueue_lock = asyncio.Lock()
        self._spans: dict[str, Span] = {}
        self._loop = asyncio.get_running_loop()
        # Shared with the board thread.
        self._cond = threading.Condition()
        self._waiting: OrderedDict[str, _Item] = OrderedDict()
        self._on_board: Run | None = None
        self._closing = False
        self._took = threading.Event()  # set by the board thread when it takes a run
        # Runs that left the board while the next one was waiting: another thread hands their
        # files to the writers (`_finish_loop`) while the next run goes.
        self._finishing: queue.SimpleQueue[_Finished | None] = queue.SimpleQueue()
        self._ends_queued = 0  # put into `_finishing` (board thread)
        self._ends_handed = 0  # of those, handed over (by `_finish_loop`)
        self._journal: Journal | None = None
        # Live output: the jobs whose partial data the scheduler says someone watches, and what
        # happened to partials (counted: observable, e.g. by tests).
        self._watched_jobs: frozenset[str] = frozenset()
        self.partials_unwatched = 0  # rounds whose partial was not even computed: nobody watched
        self.partials_unsent = 0  # computed, but no run queue was open to take it
        if settings.state_dir is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in board.board_id)
            self._journal = Journal(settings.state_dir / f"executor-journal-{safe}.jsonl")
            now, root = _now(), settings.data_root
            for run in self._journal.recover(now, lambda r, t: lost_run_data(root, r, t)):
                if not run.lost:  # ended, perhaps in an earlier life: no temporary file of it stays
                    remove_partial_files(root, run, run.updates[-1].time if run.updates else now)
                self.runs.add(run)
                if run.lost:
                    log.warning(
                        "run %s (job %s) was on the board when the executor died", run.task_id, run.job_id
                    )
        self._board_thread = threading.Thread(target=self._board_loop, name="board", daemon=True)
        self._board_thread.start()
        self._finisher = threading.Thread(target=self._finish_loop, name="board-handover", daemon=True)
        self._finisher.start()

    # ---- queries --------------------------------------------------------------------------------
    def board_info(self) -> BoardInfo:
        info = self.board.describe()
        with self._cond:
            current = self._on_board
            waiting = tuple(self._waiting)
        return BoardInfo(
            board_id=info["board_id"],
            board_uri=info["board_uri"],
            board_model=info["board_model"],
            qick_version=qick.__version__,
            config_sha256=info["config_sha256"],
            generator_count=info["generator_count"],
            readout_count=info["readout_count"],
            simulated=info["simulated"],
            current_task_id=current.task_id if current else "",
            current_job_id=current.job_id if current else "",
            waiting_task_ids=waiting,
            data_root=str(self.settings.data_root),
        )

    def get_run(self, task_id: str) -> Run:
        run = self.runs.get(task_id)
        if run is None:
            raise RunNotFound(
                "RUN_NOT_FOUND", f"this executor does not know run {task_id!r}", task_id=task_id
            )
        return run

    def watch(self, task_id: str, after_seq: int):
        """WatchRun: the updates after `after_seq` (0: from the latest one), then live ones."""
        run = self.get_run(task_id)
        if after_seq <= 0 and run.updates:
            after_seq = len(run.updates) - 1
        return run.follow(after_seq)

    async def data_file(self, task_id: str = "", name: str = "") -> tuple[Path, DataRef]:
        """A run's data file by task id, or any file under the data root by its name."""
        if name:
            root = self.settings.data_root.resolve()
            try:
                path = (root / name).resolve()
            except (ValueError, OSError):  # e.g. a NUL byte: no file can have that name
                raise RunNotFound("DATA_NOT_FOUND", "no data file by that name") from None
            if not path.is_relative_to(root) or not path.is_file():
                raise RunNotFound("DATA_NOT_FOUND", f"no data file {name!r}", name=name)
            known = next((r.data for r in self.runs.values() if r.data and r.data.name == name), None)
            if known is not None:
                return path, known
            sha = await asyncio.to_thread(file_sha256, path)
            return path, DataRef(name, sha, path.stat().st_size)
        run = self.get_run(task_id)
        if run.data is None:
            state = "has not finished" if not run.done else "has no data file"
            raise RunNotFound("DATA_NOT_FOUND", f"run {task_id} {state}", task_id=task_id)
        path = self.settings.data_root / run.data.name
        if not path.is_file():
            raise RunNotFound("DATA_NOT_FOUND", f"the data file of run {task_id} is gone", task_id=task_id)
        return path, run.data

    # ---- config and experiment ------------------------------------------------------------------
    async def hardware_config(self, configs: tuple[PinnedRevision, ...]) -> HardwareConfigUsed:
        pinned = [
            {"config_type": c.config_type, "revision_id": c.revision_id, "sha256": c.sha256} for c in configs
        ]
        hw_pin = next((c for c in configs if c.config_type == HARDWARE_CONFIG), None)
        if hw_pin is not None:
            if self.pinned is None:
                raise InvalidRequest(
                    "CONFIG_SERVICE_UNSET", "a hardware_config is pinned but no config service is set"
                )
            key: Any = ("pinned", configs) if hw_pin.sha256 else None  # a revision is immutable
            if key is not None and key in self._hw_cache:
                return self._hw_cache[key]
            cfg, content = await self.pinned.hardware_config(hw_pin.revision_id, hw_pin.sha256)
            used = HardwareConfigUsed(
                cfg, sha256_hex(content), hw_pin.revision_id, f"config service {hw_pin.revision_id}", pinned
            )
        else:
            # The local file can change under us: re-read it when its identity or mtime does.
            path = self.settings.hardware_config
            stat = await asyncio.to_thread(os.stat, path) if path is not None else None
            key = ("local", configs, stat and (stat.st_ino, stat.st_mtime_ns, stat.st_size))
            if key in self._hw_cache:
                return self._hw_cache[key]
            cfg, content = await asyncio.to_thread(load_hardware_config, path)
            used = HardwareConfigUsed(cfg, sha256_hex(content), "", str(path or "built-in default"), pinned)
        if key is not None:
            if len(self._hw_cache) > 256:
                self._hw_cache.clear()
            self._hw_cache[key] = used
        return used

    def _experiment(self, exp: LabExperiment, hw: dict) -> tuple[Experiment, CodeProvenance]:
        """A fresh experiment object and the code it is: a seed module translated to a built-in,
        else the class from the sources (the run's repository commit when it names one)."""
        module, class_name = exp.experiment_module, exp.experiment_class
        seed = find_seed_experiment(module, class_name, self.settings.experiment_packages)
        if seed is not None:
            cls, code = seed.cls, builtin_code()
        else:
            loaded = self.sources.load(
                module,
                class_name,
                commit=exp.experiment_commit,
                revision=exp.experiment_revision,
                tree_dirty=exp.experiment_tree_dirty,
            )
            cls, code = loaded.cls, loaded.code
        try:
            expt = json.loads(exp.expt_config_json or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidRequest("EXPT_CONFIG_INVALID", f"expt_config_json is not JSON: {exc}") from exc
        if not isinstance(expt, dict):
            raise InvalidRequest("EXPT_CONFIG_INVALID", "expt_config_json must be a JSON object")
        if seed is not None:  # a seed job-server module: its config is translated (seed_compat.py)
            return seed.build(self.board.soccfg, hw, expt), code
        try:
            return cls(self.board.soccfg, hw, expt), code
        except Exception as exc:
            raise InvalidRequest("EXPT_CONFIG_INVALID", f"{class_name}: {type(exc).__name__}: {exc}") from exc

    async def _pinned(self, exp: LabExperiment) -> LabExperiment:
        """The experiment with its repository commit: as pinned at submit, else resolved now
        (a job the scheduler could not check at submit, or a direct caller)."""
        if exp.experiment_commit:
            return exp
        if self.sources.repository is None:  # nothing to ask git: no thread hop per run
            resolved = self.sources.resolve(exp.experiment_module, exp.experiment_revision)
        else:
            resolved = await asyncio.to_thread(
                self.sources.resolve, exp.experiment_module, exp.experiment_revision
            )
        if resolved is None:
            return exp
        return replace(exp, experiment_commit=resolved.commit, experiment_tree_dirty=resolved.tree_dirty)

    async def _checked(self, exp: LabExperiment, hw: HardwareConfigUsed):
        """(experiment, code, violations): validate() once per cache key (validation.py)."""
        if exp.experiment_commit:  # the commit may have to be unpacked first: off the loop
            experiment, code = await asyncio.to_thread(self._experiment, exp, hw.config)
        else:
            experiment, code = self._experiment(exp, hw.config)
        key = cache_key(
            exp.experiment_module,
            exp.experiment_class,
            exp.expt_config_json,
            hw.sha256,
            self.board.config_sha256,
            exp.experiment_commit,
        )
        violations = self.validations.get(key)
        if violations is None:
            violations = tuple(await asyncio.to_thread(_safe_validate, experiment))
            self.validations.put(key, violations)
        return experiment, code, violations

    async def validate(self, module: str, class_name: str, expt_json: str, configs=()) -> list[Violation]:
        checked = await self.check(LabExperiment(class_name, module, expt_json), tuple(configs))
        return list(checked.violations)

    async def check(self, exp: LabExperiment, configs: tuple[PinnedRevision, ...] = ()) -> Validated:
        """ValidateExperiment: the job's revision resolved to a commit (when its experiment comes
        from the repository; the dirty policy applies), and what is wrong with the experiment at
        that commit; a job that already has its commit (a re-run) is checked at that commit. A
        revision or commit that does not exist raises."""
        resolved: ResolvedRevision | None
        if exp.experiment_commit:
            resolved = ResolvedRevision(
                exp.experiment_revision, exp.experiment_commit, exp.experiment_tree_dirty
            )
        else:
            exp = await self._pinned(exp)
            resolved = (
                ResolvedRevision(exp.experiment_revision, exp.experiment_commit, exp.experiment_tree_dirty)
                if exp.experiment_commit
                else None
            )
        hw = await self.hardware_config(configs)
        try:
            _, _, violations = await self._checked(exp, hw)
        except InvalidRequest as exc:
            if exc.reason in ("EXPERIMENT_NOT_FOUND", "EXPERIMENT_CLASS_MISSING"):
                return Validated((Violation("experiment_class", exc.message),), resolved)
            if exc.reason == "EXPT_CONFIG_INVALID":
                return Validated((Violation("expt_config_json", exc.message),), resolved)
            if isinstance(exc, SeedConfigError):
                return Validated(tuple(exc.violations), resolved)
            raise
        return Validated(tuple(violations), resolved)

    async def _prepare(self, request: ExecutionRequest) -> _Item:
        hw = await self.hardware_config(request.configs)
        exp = await self._pinned(request.experiment)
        experiment, code, violations = await self._checked(exp, hw)
        if violations:
            raise InvalidExperimentError(violations)
        run = Run(request.task_id, request.job_id, request.owner, exp.experiment_class, request.trace_parent)
        resume = None
        if request.resume_from is not None:
            resume = await asyncio.to_thread(self._saved_rounds, request, experiment, hw)
        if exp is not request.experiment:  # resolved here: the run records its commit
            request = replace(request, experiment=exp)
        return _Item(run, request, experiment, hw, code, resume)

    def _saved_rounds(
        self, request: ExecutionRequest, experiment: Experiment, hw: HardwareConfigUsed
    ) -> _Resume:
        """The completed rounds of the yielded run a run continues, or why it restarts instead: it
        continues only the same job's partial file, of the same experiment with the same settings
        and hardware config, and only with an experiment that can continue (`can_resume`)."""
        ref = request.resume_from
        assert ref is not None
        if not experiment.can_resume:
            return _Resume(
                ref.name, None, f"restarted: {type(experiment).__name__} cannot continue saved rounds"
            )
        root = self.settings.data_root.resolve()
        try:
            path = (root / ref.name).resolve()
        except (ValueError, OSError):
            path = root
        if not path.is_relative_to(root) or not path.is_file():
            return _Resume(ref.name, None, f"restarted: the saved data file {ref.name!r} is gone")
        if ref.sha256 and file_sha256(path) != ref.sha256:
            return _Resume(ref.name, None, f"restarted: the saved data file {ref.name!r} changed")
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            data = {name: f[name][()] for name in ("xpts", "avgi", "avgq") if name in f}
        resolved = json.loads(json.dumps(experiment.resolved_config(), default=str))
        problems = []
        if attrs.get("job_id") != request.job_id:
            problems.append("it belongs to another job")
        if attrs.get("experiment_class") != request.experiment.experiment_class:
            problems.append("another experiment wrote it")
        if not bool(attrs.get("partial")):
            problems.append("it is not a partial file")
        if attrs.get("hardware_config_sha256") != hw.sha256:
            problems.append("the hardware config differs")
        try:
            if json.loads(str(attrs.get("expt_config") or "{}")) != resolved:
                problems.append("the experiment settings differ")
        except json.JSONDecodeError:
            problems.append("its settings are unreadable")
        if problems:
            return _Resume(ref.name, None, f"restarted: cannot continue {ref.name}: {'; '.join(problems)}")
        rounds = int(attrs.get("run_rounds_done") or 0)
        try:
            segments = list(json.loads(str(attrs.get("rounds_by_run") or "[]")))
        except json.JSONDecodeError:
            segments = []
        if not segments and rounds:
            segments = [{"task_id": attrs.get("task_id", ""), "first_round": 1, "last_round": rounds}]
        saved = SavedRounds(data, rounds, str(attrs.get("task_id", "")))
        return _Resume(ref.name, saved, f"continued from {rounds} saved round(s)", segments)

    # ---- the run queue --------------------------------------------------------------------------
    def open_queue(self, command: OpenQueue) -> QueueSession:
        """A new run queue (replacing any open one): QueueOpened, the updates after each cursor,
        then every update as it happens."""
        if self._session is not None:
            self._session.replace()
        session = self._session = QueueSession()
        self._watched_jobs = frozenset()  # the new scheduler says whom it serves (WatchPartials)
        named = [self.runs.get(c.task_id) for c in command.cursors]
        with self._cond:
            waiting = [item.run for item in self._waiting.values()]
        active = [r for r in self.runs.values() if r.reached_board and not r.done]
        shown = {r.task_id for r in (*active, *waiting)}
        ended = [r for r in named if r is not None and r.task_id not in shown]
        runs = tuple(r.held() for r in (*ended, *active, *waiting))
        session.push(QueueOpened(runs, self.board_info()))
        for cursor, run in zip(command.cursors, named, strict=True):
            if run is not None:
                for update in run.after(cursor.after_seq):
                    session.push(update)
        return session

    def watch_partials(self, command: WatchPartials) -> None:
        self._watched_jobs = frozenset(command.job_ids)

    def wants_partial(self, run: Run) -> bool:
        """(board thread) Whether a partial of the run would go anywhere (else skip computing it)."""
        if self._session is not None and run.job_id in self._watched_jobs:
            return True
        self.partials_unwatched += 1
        return False

    def close_queue(self, session: QueueSession) -> None:
        if self._session is session:
            self._session = None

    def _tail(self) -> str:
        """The last waiting run, else the one on the board ("" when neither). Under _cond."""
        if self._waiting:
            return next(reversed(self._waiting))
        return self._on_board.task_id if self._on_board else ""

    def _tail_ok(self, after_task_id: str) -> tuple[bool, str]:
        with self._cond:
            tail = self._tail()
        if after_task_id == tail:
            return True, tail
        # Nothing waits or runs: a run the scheduler names as its last one has ended (or its
        # file is being written), so appending still starts the new runs right after it.
        return (not tail and self.runs.get(after_task_id) is not None), tail

    async def enqueue(self, command: EnqueueRuns) -> Enqueued:
        async with self._enqueue_lock:
            ok, tail = self._tail_ok(command.after_task_id)
            if not ok:
                return Enqueued(queue_moved=True, tail_task_id=tail, request_id=command.request_id)
            items: list[_Item] = []
            refused: list[RefusedRun] = []
            seen: set[str] = set()
            for request in command.runs:
                task = request.task_id
                if not task:
                    refused.append(RefusedRun(task, "TASK_ID_MISSING", "task_id is required"))
                    continue
                if task in seen or self.runs.get(task) is not None:
                    refused.append(RefusedRun(task, "DUPLICATE_TASK", f"run {task} was already sent"))
                    continue
                seen.add(task)
                try:
                    items.append(await self._prepare(request))
                except DomainError as exc:
                    refused.append(RefusedRun(task, exc.reason, exc.message, tuple(exc.violations)))
            # Commands come one at a time, and a run that starts or ends keeps the tail valid; only
            # a replacing queue's commands can have moved it while the runs were checked.
            ok, tail = self._tail_ok(command.after_task_id)
            if not ok:
                return Enqueued(queue_moved=True, tail_task_id=tail, request_id=command.request_id)
            now = _now()
            # The board first: an idle board thread is woken and given the GIL (this thread
            # waits for it to take the run) before the bookkeeping below. Left running, the
            # event loop would keep the GIL for ~0.25 ms (answering, writing the stream). The
            # Accepted updates still come first: Started reaches the loop through a callback.
            with self._cond:
                idle = self._on_board is None and not self._waiting and not self._closing
                for item in items:
                    self._waiting[item.run.task_id] = item
                tail = self._tail()
                if items:
                    self._took.clear()
                    self._cond.notify()
            if idle and items:
                self._took.wait(HANDOFF_WAIT_S)
            for item in items:
                self.runs.add(item.run)
                self._append(item.run, Accepted(), now)
            return Enqueued(
                accepted=tuple(i.run.task_id for i in items),
                refused=tuple(refused),
                tail_task_id=tail,
                request_id=command.request_id,
            )

    def withdraw(self, command: WithdrawRuns) -> Withdrawn:
        withdrawn, started, unknown = [], [], []
        for task in command.task_ids:
            with self._cond:
                item = self._waiting.pop(task, None)
            if item is not None:  # never touched the board: forgotten, no update
                self.runs.forget(task)
                withdrawn.append(task)
            elif self.runs.get(task) is not None:
                started.append(task)
            else:
                unknown.append(task)
        return Withdrawn(tuple(withdrawn), tuple(started), tuple(unknown), command.request_id)

    def cancel(self, command: CancelRuns) -> Cancelling:
        reason = command.reason or ("preempted" if command.preempt else "cancelled")
        cancelling, ignored = [], []
        for task in command.task_ids:
            if command.preempt:  # a yield: only the run on the board, between rounds
                with self._cond:
                    run = self._on_board
                    if run is not None and run.task_id == task and not run.cancel.is_set():
                        run.cancel_reason, run.preempt = reason, True
                        run.cancel.set()
                        cancelling.append(task)
                    else:
                        ignored.append(task)
                continue
            with self._cond:
                item = self._waiting.pop(task, None)
                run = item.run if item is not None else self.runs.get(task)
                on_board = run is not None and run is self._on_board
                if on_board and run is not None:
                    run.cancel_reason, run.preempt = reason, False  # a cancel wins over a yield
                    run.cancel.set()  # the board stops between rounds
            if item is not None:  # waiting: ends cancelled without touching the board
                item.run.cancel_reason = reason
                self._append(item.run, Cancelled(reason), _now())
                cancelling.append(task)
            elif on_board:
                cancelling.append(task)
            else:  # ended, unknown, or off the board with its file being written
                ignored.append(task)
        return Cancelling(tuple(cancelling), tuple(ignored), command.request_id)

    # ---- updates (event-loop thread) ------------------------------------------------------------
    def _post(self, run: Run, body: UpdateBody, ts: float | None = None) -> None:
        self._loop.call_soon_threadsafe(self._append, run, body, _now() if ts is None else ts)

    def _append(self, run: Run, body: UpdateBody, ts: float) -> None:
        if run.done:
            return
        live = body
        if isinstance(body, Succeeded) and body.inline_data:
            # The file's bytes go out live only: the run's kept updates (replays, the journal)
            # hold its DataRef alone.
            body = replace(body, inline_data=b"")
        update = run.append(body, ts)
        if isinstance(body, Started):
            self._start_span(run, ts)
            if self._journal is not None:
                self._journal.board_run(run)
        elif run.reached_board and self._journal is not None:
            self._journal.update(update)
        if update.terminal:
            if isinstance(body, Succeeded | Cancelled):
                run.data = body.data
            self.runs.finished(run)
            if self._journal is not None and self._journal.needs_compaction:
                self._compact()
        if self._session is not None:
            self._session.push(update if live is body else replace(update, body=live))
        if update.terminal:  # the span ends after the stream took the update (at `ts` all the same)
            self._loop.call_soon(self._end_span, run, body, ts)

    def _compact(self) -> None:
        assert self._journal is not None
        keep = [r for r in self.runs.values() if r.reached_board]
        self._journal.rewrite(keep)

    def _start_span(self, run: Run, ts: float) -> None:
        """The run's span, a child of the job's trace (ExecutionRequest.trace_parent)."""
        parent = context_from_traceparent(run.trace_parent)
        span = tracer().start_span("executor.run", context=parent, start_time=int(ts * 1e9))
        span.set_attributes(
            {
                "qsched.job_id": run.job_id,
                "qsched.task_id": run.task_id,
                "qsched.experiment_class": run.experiment_class,
                "qsched.board_id": self.board.board_id,
            }
        )
        self._spans[run.task_id] = span

    def _end_span(self, run: Run, body: UpdateBody, ts: float) -> None:
        span = self._spans.pop(run.task_id, None)
        if span is None:
            return
        span.set_attribute("qsched.outcome", body.kind.value)
        if isinstance(body, Failed):
            span.set_status(Status(StatusCode.ERROR, f"{body.reason}: {body.message}"))
        span.end(end_time=int(ts * 1e9))

    # ---- the board thread -----------------------------------------------------------------------
    def _board_loop(self) -> None:
        """Takes the next waiting run the moment the board is free. Between two runs it only
        queues the ended run for `_finish_loop` (which hands its file to the writers while the
        next run goes); with no run waiting, it hands the file over itself."""
        ended: _Finished | None = None
        while True:
            with self._cond:
                self._on_board = None
                item = self._take() if self._waiting and not self._closing else None
            if ended is not None:
                if item is None and self._ends_handed == self._ends_queued:
                    self._hand_over(ended)
                else:  # (also behind earlier ones still queued: the files go in run order)
                    self._ends_queued += 1
                    self._finishing.put(ended)
                ended = None
            if item is None:
                with self._cond:
                    while not self._waiting and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        return
                    item = self._take()
                self._took.set()  # an idle board: `enqueue` waits for this
            try:
                ended = self._work(item)
            except Exception:  # never lose the board thread
                log.exception("run %s: unexpected error on the board thread", item.run.task_id)

    def _take(self) -> _Item:
        """The next waiting run onto the board. Under _cond."""
        _, item = self._waiting.popitem(last=False)
        item.run.reached_board = True
        self._on_board = item.run
        return item

    def _work(self, item: _Item) -> _Finished | None:
        """Runs the item; what is left to do for its data file (None: it ended without one)."""
        run = item.run
        started = _now()
        self._post(run, Started(), started)
        last = [0.0]
        output = _LiveOutput(self, run)

        def progress(p: BoardProgress) -> None:
            output.flush_if_due()
            now = time.monotonic()
            final = p.rounds_total and p.rounds_done >= p.rounds_total
            if not final and now - last[0] < PROGRESS_MIN_INTERVAL_S:
                return
            last[0] = now
            self._post(run, Progress(p.rounds_done, p.rounds_total, p.reps_done, min(1.0, p.fraction)))

        try:
            saved = item.resume.saved if item.resume is not None else None
            try:
                result = item.experiment.run(RunContext(self.board, run.cancel, progress, saved, output))
            finally:  # the run's last lines go before its end
                output.flush(final=True)
        except RunCancelled as cancelled:  # a plug-in that let it through
            self._post(
                run,
                Cancelled(
                    run.cancel_reason or "cancelled",
                    cancelled.rounds_done,
                    code=item.code,
                    preempted=run.preempt,
                ),
            )
            return None
        except Exception as exc:
            log.exception("run %s failed", run.task_id, exc_info=exc)
            reason = getattr(exc, "reason", "") or "PROGRAM_ERROR"
            message = traceback.format_exception_only(type(exc), exc)[-1].strip()
            self._post(run, Failed(reason, message, item.code))
            return None
        # The board is free from here on (see _board_loop).
        return (item, result, started, _now())

    def _hand_over(self, finished: _Finished) -> None:
        """A run's data file to the writers: its attributes are gathered and it is written off
        this thread; the terminal update follows the write."""
        item, result, started, ended = finished
        run = item.run
        try:
            # The day of the run's end (a later clock reading could cross midnight).
            name = run_file_name(run.job_id or run.task_id, run.task_id, datetime.fromtimestamp(ended))
            run.resumable = item.experiment.can_resume
            future = self._writers.write(
                self.settings.data_root / name,
                result.data,
                lambda: self._attrs(item, result, started, ended),
                result.dataset_attrs,
            )
        except Exception as exc:  # the run must still end
            log.exception("run %s: its data file could not be queued", run.task_id)
            self._post(
                run, Failed("DATA_WRITE_FAILED", f"the data file could not be queued: {exc!r}", item.code)
            )
            return
        future.add_done_callback(lambda done: self._written(item, name, result, done))

    def _finish_loop(self) -> None:
        """The hand-over of runs that ended while the next one was waiting, in their order."""
        while (finished := self._finishing.get()) is not None:
            self._hand_over(finished)
            self._ends_handed += 1

    def _offer_partial(
        self, run: Run, rounds: int, total: int, data: dict[str, Any], attrs: dict[str, dict[str, Any]]
    ) -> None:
        """(event-loop thread) A partial into the run queue's slot for the run, if one is open."""
        session = self._session
        if session is None or run.done:
            self.partials_unsent += 1
            return
        series = []
        for name, values in data.items():
            try:
                flat = np.asarray(values, dtype=float).ravel().tolist()
            except (TypeError, ValueError):
                continue
            if len(flat) <= MAX_PARTIAL_POINTS:
                label = attrs.get(name, {})
                series.append(
                    Series(name, tuple(flat), str(label.get("long_name", "")), str(label.get("units", "")))
                )
        session.offer_partial(PartialData(run.task_id, run.job_id, rounds, total, _now(), tuple(series)))

    def _written(self, item: _Item, name: str, result: ExperimentResult, done: Future) -> None:
        """The writer finished (any thread): the run's terminal update."""
        run, code = item.run, item.code
        error = done.exception()
        body: UpdateBody
        if error is not None:
            if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
                body = Failed("DISK_FULL", f"the data file {name} could not be written: {error}", code)
            else:
                body = Failed(
                    "DATA_WRITE_FAILED", f"the data file {name} could not be written: {error!r}", code
                )
            log.error("run %s: %s", run.task_id, body.message)
        else:
            sha, size, inline = done.result()
            ref = DataRef(name, sha, size)
            if result.partial:
                rounds = int(result.attrs.get("rounds_done", 0))
                body = Cancelled(
                    run.cancel_reason or "cancelled",
                    rounds,
                    ref,
                    code,
                    preempted=run.preempt,
                    resumable=run.preempt and run.resumable and rounds > 0,
                )
            else:
                body = Succeeded(
                    ref,
                    dict(result.summary),
                    {k: float(v) for k, v in result.config_updates.items()},
                    code,
                    inline_data=inline,
                )
        self._post(run, body)

    def _attrs(self, item: _Item, result: ExperimentResult, started: float, ended: float) -> dict[str, Any]:
        request, experiment, hw = item.request, item.experiment, item.hw
        resolved = experiment.resolved_config()
        return {
            "job_id": request.job_id,
            "task_id": request.task_id,
            "run_id": request.task_id,
            "user": request.owner,
            "experiment_class": request.experiment.experiment_class,
            "experiment_module": request.experiment.experiment_module or "qsched_hardware.experiments",
            "expt_config": resolved,
            "expt_config_requested": request.experiment.expt_config_json or "{}",
            "config": {**hw.config, "expt": resolved},
            "hardware_config_revision_id": hw.revision_id,
            "hardware_config_sha256": hw.sha256,
            "hardware_config_source": hw.source,
            "pinned_configs": hw.pinned,
            "qick_version": qick.__version__,
            "board_id": self.board.board_id,
            "board_uri": self.board.uri,
            "board_model": self.board.model,
            "board_config_sha256": self.board.config_sha256,
            "simulated": self.board.simulated,
            "start_time": _iso(started),
            "end_time": _iso(ended),
            "partial": bool(result.partial),
            "summary": dict(result.summary),
            "config_updates": dict(result.config_updates),
            **seed_provenance(experiment),
            **(code_attrs(item.code) if item.code is not None else {}),
            **_decision_attrs(request.decision),
            **{f"run_{k}": v for k, v in result.attrs.items()},
            **_resume_attrs(item, result),
        }

    async def close(self) -> None:
        """Stop: the run on the board is cancelled between rounds and its file written; runs
        still waiting are dropped (like after a crash, the scheduler queues them again)."""
        with self._cond:
            self._closing = True
            self._waiting.clear()
            if self._on_board is not None:
                self._on_board.cancel_reason = self._on_board.cancel_reason or "executor stopping"
                self._on_board.cancel.set()
            self._cond.notify_all()
        await asyncio.to_thread(self._board_thread.join)
        self._finishing.put(None)  # after every run the board thread handed over
        await asyncio.to_thread(self._finisher.join)
        await asyncio.to_thread(self._writers.close)
        await asyncio.sleep(0)  # the writers' last callbacks
        if self._session is not None:
            self._session.replace()
        if self._journal is not None:
            self._journal.close()
        if self.pinned is not None:
            await self.pinned.close()


class _LiveOutput:
    """A run's live output (qsched_hardware's LiveOutput), called on the board thread: log lines
    into the run's capped log, flushed as `Output` updates at most every FLUSH_INTERVAL_S; the
    latest partial data handed to the event loop at most every PARTIAL_MIN_INTERVAL_S (and the
    last round's always), and only while a run queue is open to take it."""

    def __init__(self, executor: HardwareExecutor, run: Run):
        self._executor = executor
        self._run = run
        self._last_partial = -1e9

    def log(self, line: str) -> None:
        self._run.output.add(line)
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if self._run.output.due():
            self.flush()

    def flush(self, final: bool = False) -> None:
        body = self._run.output.flush(final)
        if body is not None:
            self._executor._post(self._run, body)

    def wants_partial(self) -> bool:
        return self._executor.wants_partial(self._run)

    def partial(
        self,
        rounds_done: int,
        rounds_total: int,
        data: dict[str, Any],
        dataset_attrs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        now = time.monotonic()
        last = rounds_total and rounds_done >= rounds_total
        if not last and now - self._last_partial < PARTIAL_MIN_INTERVAL_S:
            return
        self._last_partial = now
        ex = self._executor
        ex._loop.call_soon_threadsafe(
            ex._offer_partial, self._run, rounds_done, rounds_total, dict(data), dict(dataset_attrs or {})
        )


def _decision_attrs(decision: ScheduleDecision | None) -> dict[str, str]:
    """The scheduler's decision log for the run (docs/data-files.md); none without one."""
    if decision is None:
        return {}
    return {
        "schedule_policy": decision.policy,
        "schedule_summary": decision.summary,
        "schedule_details": decision.details_json,
    }


def _resume_attrs(item: _Item, result: ExperimentResult) -> dict[str, Any]:
    """What a data file says about yielding (docs/data-files.md): the run it continued
    (`resumed_from`, `resume`) and which rounds came from which run (`rounds_by_run`)."""
    out: dict[str, Any] = {}
    resume = item.resume
    if resume is not None:
        out["resumed_from"] = resume.name
        out["resume"] = resume.note
    if "rounds_this_run" not in result.attrs:
        return out
    segments = list(resume.segments) if resume is not None and resume.saved is not None else []
    before = int(result.attrs.get("rounds_before", 0))
    segments = [s for s in segments if int(s.get("last_round", 0)) <= before]
    now = int(result.attrs["rounds_this_run"])
    if now:
        segments.append({"task_id": item.run.task_id, "first_round": before + 1, "last_round": before + now})
    out["rounds_by_run"] = segments
    return out


def _safe_validate(experiment: Experiment) -> list[Violation]:
    try:
        return list(experiment.validate())
    except Exception as exc:
        return [Violation("experiment", f"validation failed: {type(exc).__name__}: {exc}")]


__all__ = ["HardwareExecutor", "InvalidExperimentError", "QueueReopened", "QueueSession", "Settings"]
