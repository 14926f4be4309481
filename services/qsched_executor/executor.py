"""The hardware executor's domain logic: one run at a time on the one board this process owns.

Runs are driven by a single board thread (qick's acquire blocks) and report through their
update logs (runs.py), which the event-loop thread owns; the threads hand updates over with
`call_soon_threadsafe`. Pipelined dispatch: a run sent with `after_task_id` while the board is
busy waits here and the board thread starts it the moment the previous run returns, without a
round trip to the scheduler. The board is released as soon as a run returns: its data file is
written on a separate writer thread (atomically), and its terminal update follows the write."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import qick

from qsched_executor.configs_client import HARDWARE_CONFIG, PinnedConfigs
from qsched_executor.errors import DeviceBusy, InvalidRequest, RunNotFound
from qsched_executor.plugins import resolve_experiment
from qsched_executor.runs import Run, RunRegistry, Update
from qsched_executor.seed_compat import SeedConfigError, find_seed_experiment
from qsched_executor.seed_compat import provenance as seed_provenance
from qsched_hardware.board import Board, Progress, RunCancelled
from qsched_hardware.datafile import run_file_path, write_run_file
from qsched_hardware.experiments import Experiment, RunContext, Violation
from qsched_hardware.hwconfig import load_hardware_config, sha256_hex

log = logging.getLogger(__name__)
PROGRESS_MIN_INTERVAL_S = 0.1  # at most ~10 progress updates per second
MAX_WAITING_RUNS = 4  # runs accepted ahead of time (after_task_id), waiting for the board


@dataclass(frozen=True)
class Settings:
    data_root: Path
    hardware_config: Path | None = None
    experiment_packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecRequest:
    job_id: str
    task_id: str
    owner: str
    experiment_class: str
    experiment_module: str
    expt_config_json: str
    configs: tuple[tuple[str, str, str], ...] = ()  # (config_type, revision_id, sha256)
    after_task_id: str = ""  # pipelined dispatch: start right after this run (see the proto)


@dataclass
class HardwareConfigUsed:
    config: dict[str, Any]
    sha256: str
    revision_id: str = ""  # empty: the local file
    source: str = ""
    pinned: list[dict[str, str]] = field(default_factory=list)


class InvalidExperimentError(InvalidRequest):
    def __init__(self, violations: list[Violation]):
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__("INVALID_EXPERIMENT", f"the experiment cannot run: {text}")
        self.violations = violations


_Item = tuple[Run, ExecRequest, Experiment, HardwareConfigUsed]


def _now() -> float:
    return time.time()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class HardwareExecutor:
    def __init__(self, board: Board, settings: Settings, pinned: PinnedConfigs | None = None):
        self.board = board
        self.settings = settings
        self.pinned = pinned
        self.runs = RunRegistry()
        self.current: Run | None = None
        self._reserved: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="board")
        # Data files are written here, off the board thread, in run order.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datafile")
        # Pipelined dispatch: runs accepted while the board is busy wait here (board thread
        # takes the next at once); guarded by _board_lock, shared with the board thread.
        self._board_lock = threading.Lock()
        self._board_active = False
        self._waiting: deque[_Item] = deque()
        self._last_task = ""  # the last run taken (on the board or waiting)
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- queries --------------------------------------------------------------------------------
    def device(self) -> dict[str, Any]:
        info = self.board.describe()
        busy = self._board_active or self._reserved is not None
        info.update(
            {
                "qick_version": qick.__version__,
                "busy": busy,
                "current_task_id": self.current.task_id if self.current else "",
                "current_job_id": self.current.job_id if self.current else "",
            }
        )
        return info

    def get_run(self, task_id: str) -> Run:
        run = self.runs.get(task_id)
        if run is None:
            raise RunNotFound(
                "RUN_NOT_FOUND", f"this executor does not know run {task_id!r}", task_id=task_id
            )
        return run

    def watch(self, task_id: str, after_seq: int):
        return self.get_run(task_id).follow(after_seq)

    def data_file(self, task_id: str) -> tuple[Path, str]:
        run = self.get_run(task_id)
        if run.data_file is None or not run.data_file.exists():
            state = "has not finished" if not run.done else "has no data file"
            raise RunNotFound("DATA_NOT_FOUND", f"run {task_id} {state}", task_id=task_id)
        return run.data_file, run.data_sha256

    # ---- config and experiment ------------------------------------------------------------------
    async def hardware_config(self, configs: tuple[tuple[str, str, str], ...]) -> HardwareConfigUsed:
        pinned = [{"config_type": t, "revision_id": r, "sha256": s} for t, r, s in configs]
        for config_type, revision_id, sha in configs:
            if config_type == HARDWARE_CONFIG:
                if self.pinned is None:
                    raise InvalidRequest(
                        "CONFIG_SERVICE_UNSET", "a hardware_config is pinned but no config service is set"
                    )
                cfg, content = await self.pinned.hardware_config(revision_id, sha)
                return HardwareConfigUsed(
                    cfg, sha256_hex(content), revision_id, f"config service {revision_id}", pinned
                )
        cfg, content = await asyncio.to_thread(load_hardware_config, self.settings.hardware_config)
        source = str(self.settings.hardware_config or "built-in default")
        return HardwareConfigUsed(cfg, sha256_hex(content), "", source, pinned)

    def _experiment(self, module: str, class_name: str, expt_json: str, hw: dict) -> Experiment:
        seed = find_seed_experiment(module, class_name, self.settings.experiment_packages)
        cls = seed.cls if seed else resolve_experiment(module, class_name, self.settings.experiment_packages)
        try:
            expt = json.loads(expt_json or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidRequest("EXPT_CONFIG_INVALID", f"expt_config_json is not JSON: {exc}") from exc
        if not isinstance(expt, dict):
            raise InvalidRequest("EXPT_CONFIG_INVALID", "expt_config_json must be a JSON object")
        if seed is not None:  # a seed job-server module: its config is translated (seed_compat.py)
            return seed.build(self.board.soccfg, hw, expt)
        try:
            return cls(self.board.soccfg, hw, expt)
        except Exception as exc:
            raise InvalidRequest("EXPT_CONFIG_INVALID", f"{class_name}: {type(exc).__name__}: {exc}") from exc

    async def validate(
        self, module: str, class_name: str, expt_json: str, configs: tuple[tuple[str, str, str], ...] = ()
    ) -> list[Violation]:
        hw = await self.hardware_config(configs)
        try:
            experiment = self._experiment(module, class_name, expt_json, hw.config)
        except InvalidRequest as exc:
            if exc.reason in ("EXPERIMENT_NOT_FOUND", "EXPERIMENT_CLASS_MISSING"):
                return [Violation("experiment_class", exc.message)]
            if exc.reason == "EXPT_CONFIG_INVALID":
                return [Violation("expt_config_json", exc.message)]
            if isinstance(exc, SeedConfigError):
                return list(exc.violations)
            raise
        return await asyncio.to_thread(_safe_validate, experiment)

    # ---- runs -----------------------------------------------------------------------------------
    async def execute(self, request: ExecRequest) -> Run:
        existing = self.runs.get(request.task_id)
        if existing is not None:
            return existing  # the same run asked for again: follow it
        if not request.task_id:
            raise InvalidRequest("TASK_ID_MISSING", "task_id is required")
        self._check_free(request)
        self._reserved = request.task_id
        try:
            hw = await self.hardware_config(request.configs)
            experiment = self._experiment(
                request.experiment_module, request.experiment_class, request.expt_config_json, hw.config
            )
            violations = await asyncio.to_thread(_safe_validate, experiment)
            if violations:
                raise InvalidExperimentError(violations)
        finally:
            self._reserved = None
        self._check_free(request)  # the board may have been taken meanwhile
        self._loop = asyncio.get_running_loop()
        run = Run(
            request.task_id,
            request.job_id,
            request.owner,
            request.experiment_class,
            request.experiment_module,
        )
        self.runs.add(run)
        run.append("accepted", _now())
        item = (run, request, experiment, hw)
        with self._board_lock:
            self._last_task = run.task_id
            if self._board_active:  # after_task_id is on the board or waiting: run right after it
                self._waiting.append(item)
                return run
            self._board_active = True
        self.current = run
        self._loop.run_in_executor(self._pool, self._board_worker, item)
        return run

    def _check_free(self, request: ExecRequest) -> None:
        """DEVICE_BUSY unless the board is free, or the request follows the last run taken."""
        with self._board_lock:
            active, waiting, last = self._board_active, len(self._waiting), self._last_task
        if self._reserved is None and not active:
            return
        if (
            request.after_task_id
            and self._reserved is None
            and request.after_task_id == last
            and waiting < MAX_WAITING_RUNS
        ):
            return
        busy_with = self.current.task_id if self.current else (self._reserved or last)
        raise DeviceBusy(
            "DEVICE_BUSY",
            f"the board is running another run ({busy_with})",
            current_task_id=busy_with or "",
        )

    def cancel(self, task_id: str, reason: str, only_if_waiting: bool = False) -> bool:
        """Stop a run between rounds, or withdraw one still waiting for the board (it never
        touches it). With `only_if_waiting`, a run that has started is left alone (False)."""
        run = self.get_run(task_id)
        if run.done:
            return False
        with self._board_lock:
            waiting = next((item for item in self._waiting if item[0] is run), None)
            if waiting is not None:  # never reached the board: withdrawn
                self._waiting.remove(waiting)
        if waiting is None and only_if_waiting:
            return False
        run.cancel_reason = reason or "cancelled"
        if waiting is not None:
            self._append(run, "cancelled", _now(), {"reason": run.cancel_reason, "rounds_done": 0})
            return True
        run.cancel.set()
        return True

    # ---- the worker threads ---------------------------------------------------------------------
    def _post(self, run: Run, kind: str, **fields: Any) -> None:
        self._post_at(run, kind, _now(), **fields)

    def _post_at(self, run: Run, kind: str, ts: float, **fields: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._append, run, kind, ts, fields)

    def _append(self, run: Run, kind: str, ts: float, fields: dict) -> None:
        if run.done:
            return
        if kind == "started":
            self.current = run
        if kind in ("result", "error", "cancelled"):
            run.data_file = fields.pop("_data_file", None)
            run.data_sha256 = fields.get("data_sha256", "")
            run.append(kind, ts, **fields)
            self.runs.finished(run)
        else:
            run.append(kind, ts, **fields)

    def _board_idle(self, run: Run) -> None:
        if self.current is run:
            self.current = None

    def _board_worker(self, item: _Item) -> None:
        """The board thread: runs the run it was given, then each run waiting behind it
        (pipelined dispatch) at once; data files are written on the writer thread meanwhile."""
        while True:
            run = item[0]
            self._work(*item)
            with self._board_lock:
                if not self._waiting:
                    self._board_active = False
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._board_idle, run)
                    return
                item = self._waiting.popleft()

    def _work(self, run: Run, request: ExecRequest, experiment: Experiment, hw: HardwareConfigUsed) -> None:
        started = _now()
        self._post_at(run, "started", started)
        last = [0.0]

        def progress(p: Progress) -> None:
            now = time.monotonic()
            final = p.rounds_total and p.rounds_done >= p.rounds_total
            if not final and now - last[0] < PROGRESS_MIN_INTERVAL_S:
                return
            last[0] = now
            self._post(
                run,
                "progress",
                rounds_done=p.rounds_done,
                rounds_total=p.rounds_total,
                reps_done=p.reps_done,
                fraction=min(1.0, p.fraction),
            )

        ctx = RunContext(self.board, run.cancel, progress)
        try:
            result = experiment.run(ctx)
        except RunCancelled as cancelled:  # a plug-in that let it through
            self._post(run, "cancelled", reason=run.cancel_reason, rounds_done=cancelled.rounds_done)
            return
        except Exception as exc:
            self._failed(run, exc)
            return
        ended = _now()
        # The board is free from here on: the data file is written on the writer thread
        # (atomically: temporary name, fsync, rename) while the next run already goes.
        self._writer.submit(self._write, run, request, experiment, hw, result, started, ended)

    def _write(
        self, run: Run, request: ExecRequest, experiment: Experiment, hw, result, started, ended
    ) -> None:
        try:
            path = run_file_path(self.settings.data_root, request.job_id or request.task_id, datetime.now())
            attrs = self._attrs(run, request, experiment, hw, result, started, ended)
            sha, size = write_run_file(path, result.data, attrs, result.dataset_attrs)
            if result.partial:
                self._post(
                    run,
                    "cancelled",
                    reason=run.cancel_reason or "cancelled",
                    data_file_path=str(path),
                    data_sha256=sha,
                    rounds_done=int(result.attrs.get("rounds_done", 0)),
                    _data_file=path,
                )
            else:
                self._post(
                    run,
                    "result",
                    data_file_path=str(path),
                    summary=dict(result.summary),
                    data_sha256=sha,
                    data_size_bytes=size,
                    config_updates={k: float(v) for k, v in result.config_updates.items()},
                    _data_file=path,
                )
        except Exception as exc:
            self._failed(run, exc)

    def _failed(self, run: Run, exc: Exception) -> None:
        log.exception("run %s failed", run.task_id, exc_info=exc)
        reason = getattr(exc, "reason", "") or "PROGRAM_ERROR"
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        self._post(run, "error", reason=reason, message=tb)

    def _attrs(self, run, request, experiment, hw, result, started, ended) -> dict[str, Any]:
        resolved = experiment.resolved_config()
        return {
            "job_id": request.job_id,
            "task_id": request.task_id,
            "run_id": request.task_id,
            "user": request.owner,
            "experiment_class": request.experiment_class,
            "experiment_module": request.experiment_module or "qsched_hardware.experiments",
            "expt_config": resolved,
            "expt_config_requested": request.expt_config_json or "{}",
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
            **{f"run_{k}": v for k, v in result.attrs.items()},
        }

    async def close(self) -> None:
        for run in list(self.runs._runs.values()):
            if not run.done:
                run.cancel.set()
        with self._board_lock:
            waiting, self._waiting = list(self._waiting), deque()
        for run, *_ in waiting:
            self._append(run, "cancelled", _now(), {"reason": "executor stopping", "rounds_done": 0})
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        await asyncio.to_thread(self._writer.shutdown, wait=True)
        if self.pinned is not None:
            await self.pinned.close()


def _safe_validate(experiment: Experiment) -> list[Violation]:
    try:
        return list(experiment.validate())
    except Exception as exc:
        return [Violation("experiment", f"validation failed: {type(exc).__name__}: {exc}")]


__all__ = ["ExecRequest", "HardwareExecutor", "InvalidExperimentError", "Settings", "Update"]
