"""The hardware executor's domain logic: one run at a time on the one board this process owns.

Runs are driven by a single worker thread (qick's acquire blocks) and report through their
update logs (runs.py), which the event-loop thread owns; the worker hands updates over with
`call_soon_threadsafe`. The board is released *before* the terminal update is published, so the
scheduler can start the next run as soon as it sees the previous one end."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
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
from qsched_hardware.board import Board, Progress, RunCancelled
from qsched_hardware.datafile import run_file_path, write_run_file
from qsched_hardware.experiments import Experiment, RunContext, Violation
from qsched_hardware.hwconfig import load_hardware_config, sha256_hex

log = logging.getLogger(__name__)
PROGRESS_MIN_INTERVAL_S = 0.1  # at most ~10 progress updates per second


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
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- queries --------------------------------------------------------------------------------
    def device(self) -> dict[str, Any]:
        info = self.board.describe()
        busy = self.current is not None or self._reserved is not None
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
        cls = resolve_experiment(module, class_name, self.settings.experiment_packages)
        try:
            expt = json.loads(expt_json or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidRequest("EXPT_CONFIG_INVALID", f"expt_config_json is not JSON: {exc}") from exc
        if not isinstance(expt, dict):
            raise InvalidRequest("EXPT_CONFIG_INVALID", "expt_config_json must be a JSON object")
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
            raise
        return await asyncio.to_thread(_safe_validate, experiment)

    # ---- runs -----------------------------------------------------------------------------------
    async def execute(self, request: ExecRequest) -> Run:
        existing = self.runs.get(request.task_id)
        if existing is not None:
            return existing  # the same run asked for again: follow it
        if not request.task_id:
            raise InvalidRequest("TASK_ID_MISSING", "task_id is required")
        if self.current is not None or self._reserved is not None:
            busy_with = self.current.task_id if self.current else self._reserved
            raise DeviceBusy(
                "DEVICE_BUSY",
                f"the board is running another run ({busy_with})",
                current_task_id=busy_with or "",
            )
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
        self._loop = asyncio.get_running_loop()
        run = Run(
            request.task_id,
            request.job_id,
            request.owner,
            request.experiment_class,
            request.experiment_module,
        )
        self.runs.add(run)
        self.current = run
        run.append("accepted", _now())
        self._loop.run_in_executor(self._pool, self._work, run, request, experiment, hw)
        return run

    def cancel(self, task_id: str, reason: str) -> bool:
        run = self.get_run(task_id)
        if run.done:
            return False
        run.cancel_reason = reason or "cancelled"
        run.cancel.set()
        return True

    # ---- the worker thread ----------------------------------------------------------------------
    def _post(self, run: Run, kind: str, **fields: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._append, run, kind, _now(), fields)

    def _append(self, run: Run, kind: str, ts: float, fields: dict) -> None:
        if run.done:
            return
        if kind in ("result", "error", "cancelled"):
            if self.current is run:
                self.current = None  # free the board before anyone hears the run ended
            run.data_file = fields.pop("_data_file", None)
            run.data_sha256 = fields.get("data_sha256", "")
            run.append(kind, ts, **fields)
            self.runs.finished(run)
        else:
            run.append(kind, ts, **fields)

    def _work(self, run: Run, request: ExecRequest, experiment: Experiment, hw: HardwareConfigUsed) -> None:
        started = _now()
        self._post(run, "started")
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
            try:
                result = experiment.run(ctx)
            except RunCancelled as cancelled:  # a plug-in that let it through
                self._post(run, "cancelled", reason=run.cancel_reason, rounds_done=cancelled.rounds_done)
                return
            ended = _now()
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
            log.exception("run %s failed", run.task_id)
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
            **{f"run_{k}": v for k, v in result.attrs.items()},
        }

    async def close(self) -> None:
        for run in list(self.runs._runs.values()):
            if not run.done:
                run.cancel.set()
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        if self.pinned is not None:
            await self.pinned.close()


def _safe_validate(experiment: Experiment) -> list[Violation]:
    try:
        return list(experiment.validate())
    except Exception as exc:
        return [Violation("experiment", f"validation failed: {type(exc).__name__}: {exc}")]


__all__ = ["ExecRequest", "HardwareExecutor", "InvalidExperimentError", "Settings", "Update"]
