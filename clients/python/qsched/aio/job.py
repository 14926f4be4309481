"""Job handles with the OQC SDK's semantics, over the qsched scheduler.

A `Job` is a mutable handle for one piece of work (a lab experiment or circuits) that keeps every
run it made: `execute()` submits and follows it to the end (a finished job runs again: a new run
with a new task id, the earlier ones stay in `history`), `reconfigure()` changes its settings,
`save()`/`load()` persist it. The scheduler is the source of truth for state: a job is
followed over the WatchJob stream, which survives dropped connections without losing events.

States: CREATED (not sent) -> SUBMITTED (queued) -> RUNNING -> COMPLETED | FAILED | CANCELLED.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from qsched import _common as c
from qsched.aio import snapshot
from qsched.aio.outputs import JobError, JobOutput, JobOutputProxy, JobResult
from qsched.aio.snapshot import SnapshotError, require
from qsched.aio.transport import Transport
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    NotFound,
    QschedError,
    Unavailable,
    Unimplemented,
)
from qsched.follow import follow_async


class JobState(enum.StrEnum):
    CREATED = "CREATED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        return self in (JobState.SUBMITTED, JobState.RUNNING, JobState.UNKNOWN)

    def __repr__(self) -> str:
        return f"<JobState.{self.name}: {self.value!r}>"


STATE_FROM_PB = {
    pb.Job.STATE_QUEUED: JobState.SUBMITTED,
    pb.Job.STATE_RUNNING: JobState.RUNNING,
    pb.Job.STATE_SUCCEEDED: JobState.COMPLETED,
    pb.Job.STATE_FAILED: JobState.FAILED,
    pb.Job.STATE_CANCELLED: JobState.CANCELLED,
}


class JobFailed(Exception):
    """Raised by `raise_for_status()` for a failed job."""

    def __init__(
        self,
        task_id: str,
        qpu_id: str | None = None,
        code: str | None = None,
        details: str | None = None,
        job_id: str | None = None,
    ):
        self.task_id = task_id
        self.qpu_id = qpu_id
        self.code = code
        self.details = details
        self.job_id = job_id
        super().__init__(
            f"job {job_id or '<unsubmitted>'} (task {task_id}) on {qpu_id} failed: ({code}) {details}"
        )


@runtime_checkable
class JobLike(Protocol):
    async def execute(self, *, timeout_s: float | None = ...) -> JobOutputProxy: ...
    async def cancel(self) -> None: ...
    async def cancel_if_active(self) -> None: ...
    @property
    def completed(self) -> bool: ...
    @property
    def outputs(self) -> JobOutputProxy: ...


def split_experiment(experiment: str | Sequence[str]) -> tuple[str, str]:
    """("module", "Class") from "module.Class" or a (module, class) pair."""
    if isinstance(experiment, str):
        module, _, cls = experiment.rpartition(".")
    elif isinstance(experiment, Sequence) and len(experiment) == 2:
        module, cls = experiment
    else:
        raise ValueError(f"experiment must be 'module.Class' or (module, class), got {experiment!r}")
    if not module or not cls:
        raise ValueError(f"experiment must be 'module.Class' or (module, class), got {experiment!r}")
    return str(module), str(cls)


def _now() -> datetime:
    return datetime.now(UTC)


class Job:
    """One job: its settings, its state on the scheduler, and every output it produced."""

    _SETTINGS = (
        "experiment",
        "config",
        "device",
        "qpu_id",
        "program",
        "shots",
        "priority",
        "labels",
        "config_revisions",
    )

    def __init__(
        self,
        transport: Transport | None,
        *,
        device: str,
        experiment: str | Sequence[str] | None = None,
        program: str | Sequence[str] | None = None,
        config: Any = None,
        shots: int | None = None,
        priority: int = 0,
        labels: dict[str, str] | None = None,
        config_revisions: dict[str, str] | None = None,
        fetch_diagnostics: bool = False,
        owner: str | None = None,
    ):
        if (experiment is None) == (program is None):
            raise ValueError("give exactly one of experiment= (a lab job) or program= (circuits)")
        self.transport = transport
        self.kind = "lab_experiment" if experiment is not None else "circuit"
        self.device = device
        self.experiment_module: str | None = None
        self.experiment_class: str | None = None
        if experiment is not None:
            self.experiment = experiment
        self._programs: list[str] | None = None
        if program is not None:
            self.program = program
        self.config = config
        self.shots = shots
        self.priority = priority
        self.labels = dict(labels or {})
        self.config_revisions = dict(config_revisions or {})
        self.fetch_diagnostics = fetch_diagnostics
        self.owner = owner
        self._raise_on_error = False
        # state on the scheduler
        self.job_id: str | None = None
        self.task_id: str | None = None
        self.state = JobState.CREATED
        self.last_seq = 0
        self.progress = 0.0
        self.queue_position = 0
        self.cancel_requested = False
        self._server_device: str | None = None
        self._submitted_at: datetime | None = None
        self._batched = False  # just sent by its CompositeJob's SubmitJobs: execute follows this run
        # outputs
        self._result: JobResult | None = None
        self._error: JobError | None = None
        self._history: list[JobOutput] = []
        self.timings: dict[str, Any] | None = None
        self.metrics: dict[str, Any] | None = None
        self.metadata: dict[str, Any] | None = None

    # -- settings ------------------------------------------------------------------------------------
    @property
    def experiment(self) -> str | None:
        if self.experiment_class is None:
            return None
        return f"{self.experiment_module}.{self.experiment_class}"

    @experiment.setter
    def experiment(self, value: str | Sequence[str]) -> None:
        if self.kind != "lab_experiment":
            raise ValueError("a circuit job has no experiment; create a lab job instead")
        self.experiment_module, self.experiment_class = split_experiment(value)

    @property
    def program(self) -> str | list[str] | None:
        if self._programs is None:
            return None
        return self._programs[0] if len(self._programs) == 1 else list(self._programs)

    @program.setter
    def program(self, value: str | Sequence[str]) -> None:
        if self.kind != "circuit":
            raise ValueError("a lab job has no program; create a circuit job instead")
        programs = [value] if isinstance(value, str) else list(value)
        if not programs or not all(isinstance(p, str) and p.strip() for p in programs):
            raise ValueError("program must be OpenQASM source text (or a list of them)")
        self._programs = programs

    @property
    def qpu_id(self) -> str:
        return self.device

    @qpu_id.setter
    def qpu_id(self, value: str) -> None:
        self.device = value

    def payload(self) -> pb.JobPayload:
        """The request payload these settings make."""
        if self.kind == "lab_experiment":
            return c.lab_payload(
                self.experiment_class or "",
                self.experiment_module or "",
                self.config if self.config is not None else {},
                self.config_revisions,
            )
        return c.circuit_payload(self._programs or [], self.shots or 0, self.config)

    def settings(self) -> dict[str, Any]:
        return c.payload_to_dict(self.payload())

    def _apply_settings(self, settings: dict[str, Any]) -> None:
        kind = settings.get("kind")
        if kind != self.kind:
            raise ValueError(f"cannot apply {kind} settings to a {self.kind} job")
        if kind == "lab_experiment":
            self.experiment = (settings["experiment_module"], settings["experiment_class"])
            self.config = settings.get("config")
            self.config_revisions = dict(settings.get("config_revisions") or {})
        else:
            self.program = settings["programs"]
            self.shots = settings.get("shots") or None
            self.config = settings.get("compiler_options")

    def _snapshot_settings(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "experiment_module",
                "experiment_class",
                "_programs",
                "config",
                "device",
                "shots",
                "priority",
                "labels",
                "config_revisions",
                "task_id",
                "state",
            )
        }

    def reconfigure(self, memento: JobOutput | dict[str, Any] | None = None, **overrides: Any) -> Job:
        """Restore the settings of an earlier output (`memento`), then apply keyword overrides
        (experiment, config, device/qpu_id, program, shots, priority, labels, config_revisions).
        The job goes back to CREATED without a task id; result, error and history are kept.
        An unknown attribute raises AttributeError and leaves the job unchanged."""
        saved = self._snapshot_settings()
        try:
            if memento is not None:
                if isinstance(memento, JobOutput):
                    self._apply_settings(memento.settings)
                    if memento.device:
                        self.device = memento.device
                elif isinstance(memento, dict):
                    self._apply_settings(memento)
                else:
                    raise TypeError(f"memento must be a job output or a settings dict, got {memento!r}")
            for name, value in overrides.items():
                if name not in self._SETTINGS:
                    raise AttributeError(
                        f"Job has no setting {name!r} (settable: {', '.join(self._SETTINGS)})"
                    )
                setattr(self, name, value)
        except BaseException:
            for name, value in saved.items():
                setattr(self, name, value)
            raise
        self.task_id = None
        self.state = JobState.CREATED
        return self

    # -- outputs -------------------------------------------------------------------------------------
    @property
    def result(self) -> JobResult | None:
        return self._result

    @property
    def error(self) -> JobError | None:
        return self._error

    @property
    def outputs(self) -> JobOutputProxy:
        """The latest run's result or error (empty before the first run ends, or when cancelled)."""
        if self._result is not None:
            return JobOutputProxy([self._result])
        if self._error is not None:
            return JobOutputProxy([self._error])
        return JobOutputProxy([])

    @property
    def history(self) -> JobOutputProxy:
        """Every output, oldest first; it only grows."""
        return JobOutputProxy(self._history)

    @property
    def completed(self) -> bool:
        return self.state is JobState.COMPLETED and self._error is None

    @property
    def ended(self) -> bool:
        return self.state.terminal

    def raise_for_status(self) -> Job:
        if self.state is JobState.FAILED or self._error is not None:
            err = self._error
            raise JobFailed(
                task_id=str(self.task_id) if self.task_id else "<unsubmitted>",
                qpu_id=self.device,
                code=err.code if err else None,
                details=err.message if err else None,
                job_id=self.job_id,
            )
        return self

    def __repr__(self) -> str:
        text = (
            f"Job(id={self.job_id or '<unsubmitted>'}, task={self.task_id or '-'}, device={self.device!r}, "
            f"state={self.state.value}, history_len={len(self._history)}"
        )
        if self._error is not None:
            text += f", error={self._error.short}"
        if self._result is not None:
            text += f", result_keys={sorted(self._result.data)}"
        return text + ")"

    # -- talking to the scheduler --------------------------------------------------------------------
    def _transport(self) -> Transport:
        if self.transport is None:
            raise RuntimeError(
                "this job has no client; load it with Client.load() or create it with a Client"
            )
        return self.transport

    def _reset_for_new_run(self) -> None:
        self.task_id = None
        self._result = None
        self._error = None
        self.timings = self.metrics = self.metadata = None
        self.progress = 0.0
        self.cancel_requested = False
        self.state = JobState.CREATED

    def _apply_job(self, job: pb.Job) -> None:
        self.state = STATE_FROM_PB.get(job.state, JobState.UNKNOWN)
        self.queue_position = job.queue_position
        self.cancel_requested = job.cancel_requested
        self.last_seq = max(self.last_seq, job.last_seq)
        if job.task_id:  # the job's task, from submit on (its current run's once that exists)
            self.task_id = job.task_id
        running = job.state != pb.Job.STATE_QUEUED and job.HasField("current_run") and job.current_run.task_id
        if running:
            self.task_id = job.task_id or job.current_run.task_id  # (a scheduler without Job.task_id)
            self.progress = job.current_run.progress

    async def submit(self, *, timeout_s: float = 30.0) -> Job:
        """Send the job (a finished one runs again). A job already in flight is left alone.
        A refusal by the scheduler (bad settings, unknown device, unsupported kind) is not
        raised: the job becomes FAILED with the reason as its error code (history +1).
        Transport failures (scheduler unreachable) raise Unavailable and leave it CREATED."""
        transport = self._transport()
        if self.state.active:
            return self
        if self.state.terminal:
            self._reset_for_new_run()
        payload = self.payload()
        request_id = str(uuid.uuid4())
        response = None
        try:
            if self.job_id and self._server_device == self.device:
                try:
                    response = await transport.call(
                        "RerunJob",
                        pb.RerunJobRequest(job_id=self.job_id, payload=payload, request_id=request_id),
                        timeout_s,
                    )
                except Unimplemented:
                    response = None  # an older scheduler: run it as a new job
            if response is None:
                response = await transport.call("SubmitJob", self._submit_request(request_id), timeout_s)
        except (Unavailable, DeadlineExceeded):
            raise
        except QschedError as err:
            self._refused(err, payload)
            return self
        await self._submitted(response.job)
        return self

    def _needs_new_job(self) -> bool:
        """Whether submit() would send SubmitJob (not RerunJob): never sent, or moved to another device."""
        return not (self.job_id and self._server_device == self.device)

    def _submit_request(self, request_id: str) -> pb.SubmitJobRequest:
        return pb.SubmitJobRequest(
            device=self.device,
            payload=self.payload(),
            priority=self.priority,
            owner=self.owner or self._transport().owner,
            request_id=request_id,
            labels=self.labels,
        )

    def _refused(self, err: QschedError, payload: pb.JobPayload | None = None) -> None:
        """The server refused or lost the job: FAILED, the error recorded in history (not raised)."""
        self.state = JobState.FAILED
        self.task_id = None
        out = JobError(
            code=err.reason or err.code.name,
            message=err.message,
            job_id=self.job_id,
            device=self.device,
            settings=c.payload_to_dict(payload if payload is not None else self.payload()),
            received=_now(),
            job=self,
        )
        self._error = out
        self._result = None
        self._history.append(out)

    async def _submitted(self, job: pb.Job) -> None:
        self.job_id = job.job_id
        self._server_device = self.device
        self._submitted_at = _now()
        self.task_id = None
        self.last_seq = job.last_seq
        self._apply_job(job)
        if self.state.terminal:  # finished before we looked (possible for tiny runs)
            await self._settle(job)

    async def refresh(self) -> Job:
        """Ask the scheduler for the job's state now (one call)."""
        if self.job_id is None:
            raise RuntimeError("the job has not been submitted")
        job = (await self._transport().call("GetJob", pb.GetJobRequest(job_id=self.job_id))).job
        if c.is_terminal(job.state):
            await self._settle(job)
        else:
            self._apply_job(job)
        return self

    async def _follow(self, timeout_s: float | None) -> None:
        transport = self._transport()
        assert self.job_id is not None
        final: pb.Job | None = None
        candidate: pb.Job | None = None
        async with asyncio.timeout(timeout_s):
            async for update in follow_async(
                transport.stub,
                transport.channel,
                self.job_id,
                self.last_seq,
                transport.reconnect_timeout_s,
                transport.address,
                connected=True,  # the job was submitted or loaded: resume after any drop
            ):
                event = update.event
                job = update.job if event is None else (event.job if event.HasField("job") else None)
                if job is not None and job.job_id:
                    self._apply_job(job)
                else:
                    self.state = STATE_FROM_PB.get(update.state, JobState.UNKNOWN)
                    if event is not None and event.task_id and update.state != pb.Job.STATE_QUEUED:
                        self.task_id = event.task_id
                    if event is not None and event.progress:
                        self.progress = event.progress
                self.last_seq = max(self.last_seq, update.seq)
                if c.is_terminal(update.state):
                    if event is not None:
                        final = job
                        break
                    candidate = job
        if final is None:
            final = candidate
        if final is None or not c.is_terminal(final.state):
            final = (await transport.call("GetJob", pb.GetJobRequest(job_id=self.job_id))).job
        await self._settle(final)

    async def _settle(self, job: pb.Job) -> None:
        """Record a finished run; a circuit or benchmark run's results come from the scheduler's
        result cache (GetJobResult), so `result.data` holds the counts (or the benchmark records)."""
        self._provider_data = None
        if job.state == pb.Job.STATE_SUCCEEDED and job.kind in (pb.JOB_KIND_CIRCUIT, pb.JOB_KIND_BENCHMARK):
            result = await self._transport().call("GetJobResult", pb.GetJobResultRequest(job_id=job.job_id))
            self._provider_data = provider_data(job, result)
        self._finish(job)

    def _finish(self, job: pb.Job) -> None:
        self._apply_job(job)
        run = job.current_run if job.HasField("current_run") else None
        task_id = (run.task_id or None) if run is not None else None
        # A job cancelled before its run started keeps the task id it had (its run's is an earlier one).
        self.task_id = job.task_id or task_id
        settings = c.payload_to_dict(run.payload) if run is not None and run.HasField("payload") else None
        common = {
            "job_id": job.job_id,
            "task_id": task_id,
            "device": job.device,
            "settings": settings or c.payload_to_dict(job.payload),
            "received": c.to_datetime(run.end_time if run is not None else job.end_time) or _now(),
            "attempt": run.attempt if run is not None else 0,
            "job": self,
        }
        if self.fetch_diagnostics:
            self.timings = c.run_timings(job, run)
            if self._submitted_at and self.timings.get("started") and "queue_s" not in self.timings:
                started = datetime.fromisoformat(self.timings["started"])
                self.timings["queue_s"] = max((started - self._submitted_at).total_seconds(), 0.0)
            self.metrics = dict(run.summary) if run is not None else {}
            self.metadata = {
                "job_id": job.job_id,
                "task_id": task_id,
                "attempt": common["attempt"],
                "device": job.device,
                "owner": job.owner,
                "priority": job.priority,
                "labels": dict(job.labels),
                "config_revisions": dict(run.config_revisions) if run is not None else {},
                "data_file_path": (run.data_file_path or None) if run is not None else None,
                "provider_task_ids": list(run.provider_task_ids) if run is not None else [],
            }
            common.update(timings=self.timings, metrics=self.metrics, metadata=self.metadata)
        known = next((o for o in self._history if task_id and o.task_id == task_id), None)
        if self.state is JobState.COMPLETED:
            out = (
                known
                if isinstance(known, JobResult)
                else JobResult(
                    data=getattr(self, "_provider_data", None)
                    or (dict(run.summary) if run is not None else {}),
                    data_file_path=(run.data_file_path or None) if run is not None else None,
                    config_revisions=dict(run.config_revisions) if run is not None else {},
                    **common,
                )
            )
            self._result, self._error = out, None
        elif self.state is JobState.FAILED:
            err = job.error if job.HasField("error") else (run.error if run is not None else None)
            reason = err.reason if err is not None else ""
            message = err.message if err is not None else ""
            out = (
                known
                if isinstance(known, JobError)
                else JobError(code=reason or "UNKNOWN", message=message or "Unknown error.", **common)
            )
            self._error, self._result = out, None
        else:  # CANCELLED: no output, nothing added to history
            return
        if known is None:
            self._history.append(out)

    async def wait(self, timeout_s: float | None = 120.0) -> Job:
        """Follow the job to a terminal state (submitting it first if it was never sent)."""
        if self.state.terminal:
            return self
        if self.state is JobState.CREATED:
            await self.submit()
            if self.state.terminal:
                return self
        try:
            await self._follow(timeout_s)
        except NotFound as err:  # deleted meanwhile: a server-reported failure like any other
            self._refused(err)
        return self

    async def execute(self, *, timeout_s: float | None = 120.0) -> JobOutputProxy:
        """Run the job and wait for it; returns `outputs`. A finished job runs again (a new run,
        new task id, history +1); a job in flight is followed, never resubmitted. If the timeout
        passes first, TimeoutError is raised and the job keeps its task and state (execute again
        to keep waiting). `timeout_s=None` waits without limit. A failed run does not raise
        (see `raise_for_status()`)."""
        if self.state.terminal and not self._batched:
            self._reset_for_new_run()
        self._batched = False
        await self.wait(timeout_s)
        if self._raise_on_error:
            self.raise_for_status()
        return self.outputs

    async def cancel(self, *, wait_s: float = 30.0) -> None:
        """Ask the scheduler to cancel the job (no call for a job never sent). A queued job ends
        CANCELLED at once; for a running one this waits up to `wait_s` for the executor to stop
        it. A job that finished first keeps its real final state."""
        if self.job_id is None or self.state is JobState.CREATED:
            return
        transport = self._transport()
        # By its task too: a job queued again since (another run, another task) is not cancelled.
        request = pb.CancelJobRequest(job_id=self.job_id, task_id=self.task_id or "")
        try:
            response = await transport.call("CancelJob", request)
        except FailedPrecondition:  # already finished (or on another task): the scheduler is the truth
            await self.refresh()
            return
        job = response.job
        if c.is_terminal(job.state):
            await self._settle(job)
            return
        self._apply_job(job)
        with contextlib.suppress(TimeoutError):  # still stopping: RUNNING with cancel_requested
            await self._follow(wait_s)

    async def cancel_if_active(self, *, wait_s: float = 30.0) -> None:
        """Cancel only a job in flight (no call for a finished or never-sent job)."""
        if self.state.active:
            await self.cancel(wait_s=wait_s)

    # -- persistence ---------------------------------------------------------------------------------
    def to_snapshot(self) -> dict[str, Any]:
        """The job as a versioned JSON document (qsched.aio.snapshot describes the format)."""
        if self.state is JobState.UNKNOWN:
            raise SnapshotError("a job in state UNKNOWN cannot be saved; refresh it first")
        return {
            **snapshot.header("job"),
            "job_id": self.job_id,
            "task_id": self.task_id,
            "state": self.state.value,
            "last_seq": self.last_seq,
            "device": self.device,
            "server_device": self._server_device,
            "owner": self.owner,
            "settings": self.settings(),
            "priority": self.priority,
            "labels": self.labels,
            "fetch_diagnostics": self.fetch_diagnostics,
            "raise_on_error": self._raise_on_error,
            "submitted_at": self._submitted_at.isoformat() if self._submitted_at else None,
            "timings": self.timings,
            "metrics": self.metrics,
            "metadata": self.metadata,
            "result": self.result.to_dict() if self.result is not None else None,
            "error": self.error.to_dict() if self.error is not None else None,
            "history": [o.to_dict() for o in self.history],
        }

    def save(self, path: str | Path) -> Path:
        """Write the job as versioned JSON (schema_version "1", kind "job")."""
        return snapshot.write(path, self.to_snapshot())

    @classmethod
    def from_snapshot(cls, transport: Transport | None, data: Any, where: str = "snapshot") -> Job:
        """The job a `to_snapshot()` document describes, talking through `transport`."""
        if snapshot.kind_of(data, where) != "job":
            raise SnapshotError(f"{where}: expected a job snapshot")
        settings = require(data, "settings", dict, where)
        state_name = require(data, "state", str, where)
        try:
            state = JobState(state_name)
        except ValueError:
            raise SnapshotError(f"{where}: unknown state {state_name!r}") from None
        if state is JobState.UNKNOWN:
            raise SnapshotError(f"{where}: state UNKNOWN cannot be loaded")
        device = require(data, "device", str, where)
        try:
            kind = settings.get("kind")
            if kind == "lab_experiment":
                job = cls(
                    transport,
                    device=device,
                    experiment=(settings["experiment_module"], settings["experiment_class"]),
                    config=settings.get("config"),
                    config_revisions=settings.get("config_revisions") or {},
                )
            elif kind == "circuit":
                job = cls(
                    transport,
                    device=device,
                    program=settings["programs"],
                    shots=settings.get("shots") or None,
                    config=settings.get("compiler_options"),
                )
            else:
                raise SnapshotError(f"{where}: unknown settings kind {kind!r}")
            job.priority = int(data.get("priority") or 0)
            job.labels = dict(data.get("labels") or {})
            job.owner = data.get("owner")
            job.fetch_diagnostics = bool(data.get("fetch_diagnostics"))
            job._raise_on_error = bool(data.get("raise_on_error"))
            job.job_id = data.get("job_id")
            job.task_id = data.get("task_id")
            job.state = state
            job.last_seq = int(data.get("last_seq") or 0)
            job._server_device = data.get("server_device") or (device if job.job_id else None)
            submitted = data.get("submitted_at")
            job._submitted_at = datetime.fromisoformat(submitted) if submitted else None
            job.timings = data.get("timings")
            job.metrics = data.get("metrics")
            job.metadata = data.get("metadata")
            history = [JobOutput.from_dict(item) for item in require(data, "history", list, where)]
        except SnapshotError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{where}: invalid job snapshot ({exc})") from None
        for item in history:
            item.job = job
        job._history = history

        def current(key: str, output: type) -> Any:
            value = data.get(key)
            if value is None:
                return None
            out = JobOutput.from_dict(value)
            if not isinstance(out, output):
                raise SnapshotError(f"{where}: field {key!r} holds a {type(out).__name__}")
            # the same object as in history when it is there
            same = next((h for h in history if h == out), None)
            if same is None:
                out.job = job
            return same or out

        job._result = current("result", JobResult)
        job._error = current("error", JobError)
        return job

    @classmethod
    def from_server(
        cls, transport: Transport, job: pb.Job, runs: Sequence[pb.Run], *, fetch_diagnostics: bool = False
    ) -> Job:
        """A handle on a job already on the scheduler: `job` as GetJob gave it, its history rebuilt
        from its earlier `runs` (ListRuns, oldest first; empty when the scheduler has none)."""
        settings = c.payload_to_dict(job.payload)
        if settings["kind"] == "lab_experiment":
            handle = cls(
                transport,
                device=job.device,
                experiment=(settings["experiment_module"], settings["experiment_class"]),
                config=settings["config"],
                config_revisions=settings["config_revisions"],
            )
        elif settings["kind"] == "circuit":
            handle = cls(transport, device=job.device, program=settings["programs"], shots=settings["shots"])
        else:
            raise ValueError(f"{job.job_id} is a {settings['kind']} job, which job handles do not support")
        handle.fetch_diagnostics = fetch_diagnostics
        handle.job_id, handle._server_device = job.job_id, job.device
        handle.owner, handle.priority, handle.labels = job.owner, job.priority, dict(job.labels)
        for run in runs[:-1]:
            if c.is_terminal(run.state):
                past = pb.Job()
                past.CopyFrom(job)
                past.state = run.state
                past.current_run.CopyFrom(run)
                if run.HasField("error"):
                    past.error.CopyFrom(run.error)
                else:
                    past.ClearField("error")
                handle._finish(past)
        handle.last_seq = 0
        if c.is_terminal(job.state):
            handle._finish(job)
        else:
            handle._apply_job(job)
        handle.last_seq = job.last_seq
        return handle


SUBMIT_BATCH = 500  # children per SubmitJobs call (the scheduler takes up to 1000)


class CompositeJob:
    """Several jobs executed together: at most `max_concurrency` of them in flight at once, each
    child's failure reported on that child (never raised), outputs in child order."""

    def __init__(self, jobs: Sequence[Job] | None = None, *, max_concurrency: int = 8):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._jobs: list[Job] = list(jobs or [])
        self.max_concurrency = max_concurrency

    def add(self, job: Job | Sequence[Job]) -> CompositeJob:
        if isinstance(job, Job):
            self._jobs.append(job)
        else:
            self._jobs.extend(job)
        return self

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self):
        return iter(self._jobs)

    def __getitem__(self, index: int) -> Job:
        return self._jobs[index]

    @property
    def completed(self) -> bool:
        return bool(self._jobs) and all(j.completed for j in self._jobs)

    @property
    def completed_jobs(self) -> list[Job]:
        return [j for j in self._jobs if j.completed]

    @property
    def failed_jobs(self) -> list[Job]:
        return [j for j in self._jobs if j.error is not None]

    @property
    def active_jobs(self) -> list[Job]:
        return [j for j in self._jobs if not j.state.terminal]

    @property
    def terminal_jobs(self) -> list[Job]:
        return [j for j in self._jobs if j.state.terminal]

    @property
    def outputs(self) -> JobOutputProxy:
        return JobOutputProxy([o for j in self._jobs for o in j.outputs])

    @property
    def history(self) -> JobOutputProxy:
        return JobOutputProxy([o for j in self._jobs for o in j.history])

    def __repr__(self) -> str:
        n = len(self._jobs)
        done, failed = len(self.completed_jobs), len(self.failed_jobs)
        return f"CompositeJob(jobs={n}, completed={done}, failed={failed}, active={n - done - failed})"

    async def _gather(self, fn) -> list[Any]:
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def one(job: Job) -> Any:
            async with semaphore:
                return await fn(job)

        return await asyncio.gather(*(one(j) for j in self._jobs), return_exceptions=True)

    def _check_clients(self) -> None:
        for job in self._jobs:
            if job.transport is None:
                raise RuntimeError(f"{job!r} has no client")

    async def execute(self, *, timeout_s: float | None = 120.0) -> JobOutputProxy:
        """Execute every child (finished children run again; children in flight are followed).
        Failed children do not raise. If any child timed out, TimeoutError is raised after all
        the others settled; their outputs are kept on the children."""
        if not self._jobs:
            return JobOutputProxy([])
        self._check_clients()
        # The first wave (as many as may be in flight) in one SubmitJobs call; the rest as slots free.
        idle = [j for j in self._jobs if not j.state.active]
        await self._submit_together(idle[: self.max_concurrency])
        outcomes = await self._gather(lambda job: job.execute(timeout_s=timeout_s))
        timeouts = [o for o in outcomes if isinstance(o, TimeoutError)]
        others = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, TimeoutError)]
        if timeouts:
            raise TimeoutError(f"{len(timeouts)} of {len(self._jobs)} jobs did not finish in time")
        if others:
            raise others[0]
        return self.outputs

    async def _submit_together(self, jobs: list[Job]) -> None:
        """New children in SubmitJobs calls (one per client, at most SUBMIT_BATCH jobs each) instead
        of a call each. SubmitJobs is all-or-nothing: if the scheduler refuses the batch (or predates
        it), the children go one by one, so each refusal is recorded on its own child."""
        for job in jobs:
            if job.state.terminal:
                job._reset_for_new_run()
        fresh = [j for j in jobs if j._needs_new_job()]
        by_transport: dict[int, list[Job]] = {}
        for job in fresh:
            by_transport.setdefault(id(job._transport()), []).append(job)
        for group in by_transport.values():
            for start in range(0, len(group), SUBMIT_BATCH):
                batch = group[start : start + SUBMIT_BATCH]
                requests = [job._submit_request(str(uuid.uuid4())) for job in batch]
                try:
                    answer = (
                        await batch[0]
                        ._transport()
                        .call("SubmitJobs", pb.SubmitJobsRequest(requests=requests), 60.0)
                    )
                except (Unavailable, DeadlineExceeded):
                    raise
                except QschedError:
                    continue  # submitted one by one below
                for job, response in zip(batch, answer.responses, strict=True):
                    await job._submitted(response.job)
                    job._batched = True

    async def submit(self) -> CompositeJob:
        self._check_clients()
        await self._submit_together([j for j in self._jobs if not j.state.active])
        for job in self._jobs:
            job._batched = False  # submitted: a later execute() follows it like any handle
        outcomes = await self._gather(lambda job: job.submit())
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return self

    async def cancel(self) -> None:
        await asyncio.gather(*(j.cancel() for j in self._jobs))

    async def cancel_if_active(self) -> None:
        await asyncio.gather(*(j.cancel_if_active() for j in self._jobs))

    def raise_for_status(self) -> CompositeJob:
        for job in self._jobs:
            job.raise_for_status()
        return self

    def to_snapshot(self) -> dict[str, Any]:
        return {
            **snapshot.header("composite"),
            "max_concurrency": self.max_concurrency,
            "jobs": [job.to_snapshot() for job in self._jobs],
        }

    def save(self, path: str | Path) -> Path:
        return snapshot.write(path, self.to_snapshot())

    @classmethod
    def from_snapshot(cls, transport: Transport | None, data: Any, where: str = "snapshot") -> CompositeJob:
        if snapshot.kind_of(data, where) != "composite":
            raise SnapshotError(f"{where}: expected a composite snapshot")
        jobs = require(data, "jobs", list, where)
        children = [Job.from_snapshot(transport, j, f"{where}: jobs[{i}]") for i, j in enumerate(jobs)]
        return cls(children, max_concurrency=int(data.get("max_concurrency") or 8))


_CREG = re.compile(r"\b(?:creg\s+(\w+)\s*\[|bit\s*\[\s*\d+\s*\]\s+(\w+))")


def provider_data(job: pb.Job, result: pb.GetJobResultResponse) -> dict[str, Any]:
    """`result.data` of a circuit or benchmark run. Circuits: counts keyed by the program's
    classical register when it has exactly one (`{"c": {"00": 512, "11": 488}}`, as in the OQC
    SDK), else under "counts"; a list when the job had several circuits. Benchmarks: the
    metriq-gym-shaped records under "results"."""
    if job.kind == pb.JOB_KIND_BENCHMARK:
        return {"results": json.loads(result.benchmark_results_json or "[]")}
    counts = [dict(circuit.counts) for task in result.tasks for circuit in task.circuits]
    programs = list(job.payload.circuit.qasm)
    registers = (
        {name for match in _CREG.finditer(programs[0]) for name in match.groups() if name}
        if programs
        else set()
    )
    key = registers.pop() if len(registers) == 1 else "counts"
    return {key: counts[0] if len(counts) == 1 else counts}
