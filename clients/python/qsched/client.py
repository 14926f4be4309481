"""`JobClient`: the seed job server's synchronous client, over the qsched scheduler.

Every call of the seed works with the same names, arguments and result fields; a notebook that
did `from job_server import JobClient` needs only `from qsched import JobClient`. Differences:

- `server_url` is the scheduler's gRPC address "host:port" (default `QSCHED_ADDRESS`, else
  127.0.0.1:50051); an "http://host:port" string is accepted and its scheme dropped.
- `wait_for_completion` follows the job's event stream instead of polling (`poll_interval` is
  accepted and ignored), resumes after a dropped connection, and shows a progress bar; a small
  data file comes with the job's last event (no second call to fetch it).
- `cancel_job` also stops a running job (the executor stops between averaging rounds).
- Failed calls raise `qsched.errors.QschedError` subclasses (NotFound, InvalidArgument...), with the
  scheduler's reason, instead of `requests.HTTPError`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from qsched import _common as c
from qsched import connection
from qsched._pages import collect
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.calls import Calls
from qsched.errors import QschedError
from qsched.wire import timestamp

_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@dataclass
class JobResult:
    """A job as `get_status` / `wait_for_completion` see it (the seed's fields first)."""

    job_id: str
    status: str  # pending | running | completed | failed | cancelled
    user: str = ""
    experiment_class: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    data_file_path: str | None = None
    expt_pickle_path: str | None = None  # qsched does not pickle experiments: always None
    error_message: str | None = None
    queue_position: int | None = None
    hardware_config_version_id: str | None = None
    multiphoton_config_version_id: str | None = None
    floquet_storage_version_id: str | None = None
    man1_storage_version_id: str | None = None
    # qsched additions
    priority: int = 0
    device: str = ""
    experiment_module: str | None = None
    expt_config: dict[str, Any] | None = None
    config_revisions: dict[str, str] = field(default_factory=dict)
    error_reason: str | None = None
    task_id: str | None = None
    attempt: int = 0
    run_count: int = 0
    progress: float = 0.0
    summary: dict[str, float] = field(default_factory=dict)
    estimated_start_time: datetime | None = None
    cancel_requested: bool = False
    job: pb.Job | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_job(cls, job: pb.Job) -> JobResult:
        run = job.current_run if job.HasField("current_run") else None
        payload = c.payload_to_dict(job.payload)
        revisions = dict(run.config_revisions) if run is not None else {}
        error = job.error if job.HasField("error") else None
        if error is None and run is not None and run.HasField("error"):
            error = run.error
        fields = {name: revisions.get(kind) for kind, name in c.SEED_CONFIG_FIELDS.items()}
        return cls(
            job_id=job.job_id,
            status=c.SEED_STATUS.get(job.state, "unknown"),
            user=job.owner,
            experiment_class=payload.get("experiment_class"),
            created_at=c.to_datetime(job.create_time),
            started_at=c.to_datetime(job.start_time),
            completed_at=c.to_datetime(job.end_time),
            data_file_path=(run.data_file_path or None) if run is not None else None,
            error_message=(f"{error.reason}: {error.message}" if error.reason else error.message)
            if error is not None
            else None,
            queue_position=job.queue_position or None,
            priority=job.priority,
            device=job.device,
            experiment_module=payload.get("experiment_module"),
            expt_config=payload.get("config") if payload.get("kind") == "lab_experiment" else None,
            config_revisions=revisions,
            error_reason=error.reason if error is not None else None,
            task_id=job.task_id or ((run.task_id or None) if run is not None else None),
            attempt=run.attempt if run is not None else 0,
            run_count=job.run_count,
            progress=run.progress if run is not None else 0.0,
            summary=dict(run.summary) if run is not None else {},
            estimated_start_time=c.to_datetime(job.estimated_start_time),
            cancel_requested=job.cancel_requested,
            job=job,
            **fields,
        )

    def is_done(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")

    def is_successful(self) -> bool:
        return self.status == "completed"

    def load_expt(self) -> Any:
        raise ValueError(
            "qsched does not pickle experiment objects; "
            "use JobClient.load_data(job_id) for the data and config"
        )

    def to_dict(self) -> dict[str, Any]:
        """The seed's JobStatus dict (ISO timestamps), plus qsched's fields."""
        out = {k: v for k, v in self.__dict__.items() if k != "job"}
        for key in ("created_at", "started_at", "completed_at", "estimated_start_time"):
            out[key] = c.iso(out[key])
        return out


class JobClient:
    """Submit lab experiments and follow them (the seed's JobClient, over gRPC)."""

    def __init__(
        self,
        server_url: str | None = None,
        *,
        device: str | None = None,
        timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
        token: str | None = None,
    ):
        self.address = connection.scheduler_address(server_url)
        self.server_url = self.address
        self.device = device or connection.default_device()
        self.reconnect_timeout = reconnect_timeout
        self._channel = connection.channel(self.address, token)
        self._stub = pb_grpc.JobServiceStub(self._channel)  # the streams: WatchJob, FetchData
        # Unary qsched.jobs.v1.JobService calls by name, raising QschedError (the CLI uses it too).
        self.calls = Calls(self._channel, "JobService", pb, self.address, timeout)

    @property
    def timeout(self) -> float:
        """Seconds each call may take."""
        return self.calls.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self.calls.timeout = value

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JobClient({self.address!r})"

    # -- the seed's calls -------------------------------------------------------------------------------
    def health_check(self) -> dict[str, Any]:
        """{"status": "healthy"|"unhealthy", "database_connected", "pending_jobs", "running_jobs"}
        from the scheduler's grpc.health.v1 status and its device queues. Never raises."""
        out: dict[str, Any] = {
            "status": "unhealthy",
            "database_connected": False,
            "pending_jobs": 0,
            "running_jobs": 0,
            "address": self.address,
        }
        try:
            check = self._channel.unary_unary(
                _HEALTH_CHECK, request_serializer=lambda b: b, response_deserializer=lambda b: b
            )
            raw = check(b"", timeout=min(self.timeout, 5.0))
            serving = raw[:2] == b"\x08\x01"  # HealthCheckResponse{status: SERVING}
            devices = self._stub.ListDevices(pb.ListDevicesRequest(), timeout=self.timeout).devices
        except grpc.RpcError as error:
            out["error"] = f"{error.code().name}: {error.details()}"
            return out
        out.update(
            status="healthy" if serving else "unhealthy",
            database_connected=True,  # ListDevices counts the queues in the database
            pending_jobs=sum(d.queued for d in devices),
            running_jobs=sum(1 for d in devices if d.running_job_id),
            devices={
                d.name: {"queued": d.queued, "running_job_id": d.running_job_id or None} for d in devices
            },
        )
        return out

    def submit_job(
        self,
        experiment_class: str,
        experiment_module: str,
        expt_config: dict[str, Any],
        user: str = "",
        priority: int = 0,
        *,
        device: str | None = None,
        config_revisions: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        request_id: str | None = None,
        experiment_revision: str | None = None,
        yield_at_safe_points: bool = False,
    ) -> str:
        """Queue a lab experiment; returns its job id (JOB-YYYYMMDD-NNNNN). The owner is the
        token's user; `user` (the seed's argument) may be given only when it names that user.
        `experiment_revision`: a branch, tag or commit of the device's experiment repository
        (docs/experiments.md); the job runs the commit it names at submit.
        `yield_at_safe_points`: the job may be asked to yield between averaging rounds when a
        calibration or higher-priority job is due, where its device allows that; it then continues
        from the rounds it completed (docs/calibration.md, "Yielding at safe points")."""
        for name, value in (("experiment_class", experiment_class), ("experiment_module", experiment_module)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string")
        if not isinstance(user, str) or (user and not user.strip()):
            raise ValueError("user must be your user name, or empty for the token's user")
        if not isinstance(expt_config, dict):
            raise ValueError("expt_config must be a dict")
        request = pb.SubmitJobRequest(
            device=device or self.device,
            payload=c.lab_payload(
                experiment_class,
                experiment_module,
                expt_config,
                config_revisions,
                experiment_revision or "",
                yield_at_safe_points,
            ),
            priority=priority,
            owner=user,
            request_id=request_id or str(uuid.uuid4()),
            labels=labels or {},
        )
        return self.calls("SubmitJob", request).job.job_id

    def get_status(self, job_id: str) -> JobResult:
        """The job by its job id, or by a task id (`JobResult.task_id`, set from submit on)."""
        return self._with_local_data(
            JobResult.from_job(self.calls("GetJob", pb.GetJobRequest(**c.job_ref(job_id))).job)
        )

    def _with_local_data(self, result: JobResult) -> JobResult:
        """The seed's `data_file_path` is a file this machine can open. The executor names its files
        relative to its data root: a finished run's file is fetched into the cache (once) and its
        local path given instead; if that fails, the name stays as the executor gave it. The run
        is the one the job in hand names (no GetJob again)."""
        name = result.data_file_path
        if not name or Path(name).is_absolute() or not result.is_successful():
            return result
        from qsched import data

        try:
            ref = data.run_ref(result.job) if result.job is not None else None
            path = (
                data.locate_run(self._stub, ref)
                if ref is not None and ref.data_file_path == name
                else self.data_path(result.job_id, result.task_id)
            )
            result.data_file_path = str(path)
        except Exception as exc:  # the path stays a name; loading it says what is missing
            print(f"qsched: could not fetch {name}: {exc}", file=sys.stderr)
        return result

    def wait_for_completion(
        self,
        job_id: str,
        poll_interval: float | None = None,
        timeout: float | None = None,
        verbose: bool = True,
    ) -> JobResult:
        """Block until the job is completed, failed or cancelled and return its final status.

        Follows the job's event stream (no polling; `poll_interval` is ignored) and resumes it
        after a dropped connection. `timeout` (seconds, None = forever) raises TimeoutError.
        Ctrl+C: a job still waiting in the queue is cancelled; for a running job the command that
        cancels it is printed. KeyboardInterrupt is raised again in both cases."""
        from qsched.follow import follow
        from qsched.progress import Progress

        deadline = None if timeout is None else time.monotonic() + timeout
        first = self.get_status(job_id)  # fails fast (NotFound, Unavailable) before following
        if first.is_done():
            return first
        display = Progress(job_id, verbose)
        state = pb.Job.STATE_UNSPECIFIED
        final: pb.Job | None = None
        data_file: pb.RunDataFile | None = None
        try:
            for update in follow(
                self._stub,
                self._channel,
                job_id,
                0,
                deadline,
                self.reconnect_timeout,
                self.address,
                True,
                include_data=True,
            ):
                state = update.state
                data_file = update.data_file or data_file
                job = (
                    update.job
                    if update.event is None
                    else (update.event.job if update.event.HasField("job") else None)
                )
                if job is not None and job.job_id:
                    final = job
                fraction = update.event.progress if update.event is not None else None
                if update.event is None and job is not None and job.HasField("current_run"):
                    fraction = job.current_run.progress
                message = update.event.message if update.event is not None else ""
                display.update(
                    c.SEED_STATUS.get(state, "unknown"),
                    fraction,
                    message if state != pb.Job.STATE_RUNNING else "",
                )
                if c.is_terminal(state) and update.event is not None:
                    break
        except TimeoutError:
            display.close()
            raise TimeoutError(
                f"{job_id} still {c.SEED_STATUS.get(state, 'unknown')} after {timeout:g} s "
                "(it keeps its place; wait again or cancel it)"
            ) from None
        except KeyboardInterrupt:
            display.close()
            self._interrupted(job_id)
            raise
        display.close()
        if final is None or not c.is_terminal(final.state):
            return self.get_status(job_id)
        result = JobResult.from_job(final)
        if data_file is not None and self._keep_data_file(result, data_file):
            return result
        return self._with_local_data(result)

    def _keep_data_file(self, result: JobResult, file: pb.RunDataFile) -> bool:
        """The run's file came with the terminal event: into the local cache, at the path
        `_with_local_data` would give (no FetchJobData). False: it is fetched as before."""
        from qsched import data

        name = result.data_file_path
        ref = data.run_ref(result.job) if result.job is not None else None
        if not name or Path(name).is_absolute() or not result.is_successful():
            return False  # an absolute name is opened where it is, as before
        if ref is None or ref.task_id != file.task_id or ref.data_file_path != name:
            return False
        try:
            result.data_file_path = str(data.keep_run_file(ref, file.file_name, file.sha256, file.content))
        except Exception as exc:  # e.g. a full disk: the fetch says what is wrong
            print(f"qsched: could not keep the data file sent with {result.job_id}: {exc}", file=sys.stderr)
            return False
        return True

    def _interrupted(self, job_id: str) -> None:
        try:
            status = self.get_status(job_id)
        except QschedError as error:
            print(f"\nInterrupted; could not check {job_id}: {error}", file=sys.stderr)
            return
        if status.status == "pending":
            try:
                self.cancel_job(job_id)
                print(f"\nInterrupted: {job_id} was still queued and has been cancelled.", file=sys.stderr)
            except QschedError as error:  # it started in the meantime
                print(f"\nInterrupted: could not cancel {job_id}: {error}", file=sys.stderr)
        elif status.status == "running":
            print(
                f"\nInterrupted: {job_id} keeps running on {status.device or 'the device'}. "
                f"To stop it: qsched cancel {job_id}  (or JobClient().cancel_job({job_id!r}))",
                file=sys.stderr,
            )

    def list_queue(self, device: str | None = None) -> dict[str, Any]:
        """{"pending_jobs": [...], "running_job": {...}|None, "total_pending": n} (dicts as in the seed;
        `running_jobs` lists every running job when several devices are queued)."""
        jobs = [
            JobResult.from_job(j)
            for j in c.list_jobs(self.calls, pb.LIST_VIEW_QUEUE, [], "", device or "", 1000)
        ]
        running = [j.to_dict() for j in jobs if j.status == "running"]
        pending = [j.to_dict() for j in jobs if j.status == "pending"]
        return {
            "pending_jobs": pending,
            "running_job": running[0] if running else None,
            "running_jobs": running,
            "total_pending": len(pending),
        }

    def print_queue(self, device: str | None = None) -> None:
        queue = self.list_queue(device)
        print("=" * 60)
        print("JOB QUEUE")
        print("=" * 60)
        if queue["running_jobs"]:
            for job in queue["running_jobs"]:
                print(
                    f"RUNNING: {job['job_id']} - {job['experiment_class']} ({job['user']}) on {job['device']}"
                )
        else:
            print("RUNNING: none")
        print(f"\nPENDING ({queue['total_pending']} jobs):")
        for job in queue["pending_jobs"][:10]:
            print(
                f"  {job['queue_position'] or '-':>3}. {job['job_id']} - {job['experiment_class']} "
                f"({job['user']}, priority {job['priority']})"
            )
        if queue["total_pending"] > 10:
            print(f"  ... and {queue['total_pending'] - 10} more")
        print("=" * 60)

    # -- device queues ---------------------------------------------------------------------------------
    def list_devices(self) -> list[dict[str, Any]]:
        """Every device: name, queued, running_job_id and queue_state ("open", "paused",
        "draining", "drained") with hold_reason / held_by / hold_time when held."""
        return [device_dict(d) for d in self.calls("ListDevices", pb.ListDevicesRequest()).devices]

    def get_device(self, name: str) -> dict[str, Any]:
        return device_dict(self.calls("GetDevice", pb.GetDeviceRequest(name=name)).device)

    def pause_device(self, name: str, reason: str = "") -> dict[str, Any]:
        """Hold the device's queue at once (operator role): jobs are accepted, none starts."""
        return device_dict(self.calls("PauseDevice", pb.PauseDeviceRequest(name=name, reason=reason)).device)

    def drain_device(self, name: str, reason: str = "") -> dict[str, Any]:
        """Let the current run finish, then hold (operator role): "draining", then "drained"."""
        return device_dict(self.calls("DrainDevice", pb.DrainDeviceRequest(name=name, reason=reason)).device)

    def resume_device(self, name: str) -> dict[str, Any]:
        """Open a held device's queue again (operator role)."""
        return device_dict(self.calls("ResumeDevice", pb.ResumeDeviceRequest(name=name)).device)

    def cancel_job(self, job_id: str, reason: str = "") -> dict[str, Any]:
        """Cancel a queued job (at once) or a running one (the executor stops it), by its job id or
        its task id (also before it starts). Raises FailedPrecondition (JOB_ALREADY_FINISHED) for a
        finished job, TASK_NOT_CURRENT for a task the job has moved on from."""
        job = self.calls("CancelJob", pb.CancelJobRequest(reason=reason, **c.job_ref(job_id))).job
        job_id = job.job_id
        status = c.SEED_STATUS.get(job.state, "unknown")
        message = f"Job {job_id} cancelled" if status == "cancelled" else f"Job {job_id} is being stopped"
        return {
            "message": message,
            "job_id": job_id,
            "status": status,
            "cancel_requested": job.cancel_requested,
        }

    def get_history(
        self, limit: int = 50, user: str | None = None, status: str | None = None, device: str | None = None
    ) -> list[dict[str, Any]]:
        """Recent jobs, newest first: dicts with job_id, user, experiment_class, status, created_at,
        completed_at, data_file_path (the seed's keys) and a few more."""
        states: list[int] = []
        if status is not None:
            if status not in c.SEED_STATUS_TO_PB:
                raise ValueError(f"Invalid status: {status}. Valid values: {c.SEED_STATUSES}")
            states = [c.SEED_STATUS_TO_PB[status]]
        jobs = c.list_jobs(self.calls, pb.LIST_VIEW_HISTORY, states, user or "", device or "", limit)
        out = []
        for job in jobs:
            r = JobResult.from_job(job)
            out.append(
                {
                    "job_id": r.job_id,
                    "user": r.user,
                    "experiment_class": r.experiment_class,
                    "status": r.status,
                    "created_at": c.iso(r.created_at),
                    "completed_at": c.iso(r.completed_at),
                    "data_file_path": r.data_file_path,
                    "priority": r.priority,
                    "device": r.device,
                    "error_message": r.error_message,
                }
            )
        return out

    # -- qsched additions -----------------------------------------------------------------------------
    def delete_job(self, job_id: str) -> None:
        """Forget a finished job (its data files are kept)."""
        self.calls("DeleteJob", pb.DeleteJobRequest(job_id=job_id))

    def rerun_job(
        self,
        job_id: str,
        expt_config: dict[str, Any] | None = None,
        *,
        experiment_revision: str | None = None,
    ) -> str:
        """Queue a finished job again (a new run with a new task id); optionally with a new
        expt_config. It runs the experiment-repository commit the job pinned at submit, or the
        commit `experiment_revision` names now."""
        payload = None
        if expt_config is not None:
            current = self.calls("GetJob", pb.GetJobRequest(job_id=job_id)).job.payload
            lab = current.lab_experiment
            payload = c.lab_payload(
                lab.experiment_class, lab.experiment_module, expt_config, dict(lab.config_revisions)
            )
        request = pb.RerunJobRequest(
            job_id=job_id,
            payload=payload,
            request_id=str(uuid.uuid4()),
            experiment_revision=experiment_revision or "",
        )
        return self.calls("RerunJob", request).job.job_id

    def get_runs(self, job_id: str) -> list[dict[str, Any]]:
        """Every run (attempt) of a job, oldest first, with the settings that produced it."""
        runs = collect(
            lambda token, size: self.calls(
                "ListRuns",
                pb.ListRunsRequest(
                    job_id=job_id, page_size=size, page_token=token, job_view=pb.JOB_VIEW_FULL
                ),
            ),
            lambda page: page.runs,
        )
        return [
            {
                "task_id": run.task_id,
                "attempt": run.attempt,
                "status": c.SEED_STATUS.get(run.state, "unknown"),
                "started_at": c.iso(c.to_datetime(run.start_time)),
                "completed_at": c.iso(c.to_datetime(run.end_time)),
                "data_file_path": run.data_file_path or None,
                "summary": dict(run.summary),
                "config_revisions": dict(run.config_revisions),
                "error_message": run.error.message if run.HasField("error") else None,
                "settings": c.payload_to_dict(run.payload),
                "code": _code_dict(run) if run.HasField("code") else None,
            }
            for run in runs
        ]

    def get_log(self, job_id: str, task_id: str | None = None) -> list[str]:
        """The log lines a job's runs wrote (of one run with `task_id`), in order. The executor caps
        them per run and per second; a line "[qsched] N log line(s) dropped (...)" marks a gap."""
        response = self.calls("GetJobLog", pb.GetJobLogRequest(job_id=job_id, task_id=task_id or ""))
        return [line for event in response.events for line in event.log.lines]

    def download(self, job_id: str, path: str | Path | None = None, task_id: str | None = None) -> Path:
        """Copy the run's HDF5 file to `path` (a file or a directory; default: the current directory)."""
        import shutil

        from qsched import data

        source = data.locate(self._stub, job_id, task_id, timeout=self.timeout)
        target = Path(path) if path is not None else Path.cwd()
        if target.is_dir():
            target = target / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        return target

    def data_path(self, job_id: str, task_id: str | None = None) -> Path:
        """A local path holding the run's data file (shared filesystem or fetched into the cache)."""
        from qsched import data

        return data.locate(self._stub, job_id, task_id, timeout=self.timeout)

    def load_data(self, job_id: str, task_id: str | None = None):
        """The run's arrays and config (`qsched.data.RunData`), whether or not this machine shares a
        filesystem with the executor. Needs h5py and numpy (`pip install 'qsched[data]'`)."""
        from qsched import data

        return data.read(self.data_path(job_id, task_id))

    # -- provider devices and metriq-gym benchmarks (see qsched.benchmarks) ---------------------------
    def get_job(self, job_id: str) -> pb.Job:
        """The job as the scheduler holds it (the proto, any kind), by job id or task id."""
        return self.calls("GetJob", pb.GetJobRequest(**c.job_ref(job_id))).job

    def list_jobs(
        self, kind: int = pb.JOB_KIND_UNSPECIFIED, owner: str | None = None, limit: int = 50
    ) -> list[pb.Job]:
        """Jobs newest first, optionally of one kind (pb.JOB_KIND_BENCHMARK...) and one owner."""

        def page(token: str, size: int) -> pb.ListJobsResponse:
            request = pb.ListJobsRequest(
                view=pb.LIST_VIEW_HISTORY,
                owner=owner or "",
                kind=kind,
                page_size=size,
                page_token=token,
                job_view=pb.JOB_VIEW_FULL,
            )
            return self.calls("ListJobs", request)

        return collect(page, lambda response: response.jobs, limit)

    def _submit_payload(
        self,
        payload: pb.JobPayload,
        device: str,
        owner: str | None,
        priority: int,
        labels: dict[str, str] | None,
        request_id: str | None,
    ) -> str:
        request = pb.SubmitJobRequest(
            device=device,
            payload=payload,
            priority=priority,
            owner=owner or connection.default_owner(),
            request_id=request_id or str(uuid.uuid4()),
            labels=labels or {},
        )
        return self.calls("SubmitJob", request).job.job_id

    def dispatch_benchmark(
        self,
        config: str | Path | dict[str, Any],
        device: str,
        *,
        owner: str | None = None,
        priority: int = 0,
        labels: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> str:
        """Queue a metriq-gym job config (a file path, JSON text or dict) as a BENCHMARK job on a
        provider device `<provider>:<device>` (e.g. "local:aer_simulator"); returns the job id."""
        from qsched import benchmarks

        _, text = benchmarks.load_config(config)
        return self._submit_payload(
            benchmarks.benchmark_payload(text), device, owner, priority, labels, request_id
        )

    def dispatch_suite(
        self,
        suite: str | Path | dict[str, Any],
        device: str,
        *,
        owner: str | None = None,
        priority: int = 0,
        labels: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> str:
        """Queue a metriq-gym suite file as one BENCHMARK job (all entries dispatch and poll as one)."""
        from qsched import benchmarks

        _, text = benchmarks.load_suite(suite)
        return self._submit_payload(
            benchmarks.suite_payload(text), device, owner, priority, labels, request_id
        )

    def estimate(
        self, config: str | Path | dict[str, Any], device: str, *, suite: bool = False
    ) -> dict[str, Any]:
        """What a benchmark config (or a suite, suite=True) would run on a provider device: the gateway's
        resource estimate as a dict (jobs, circuits, total_shots, max_qubits, gate totals, measurements,
        resets, total_hqc, cost, cost_unit, cost_basis, params, per_circuit[])."""
        import json as _json

        from qsched import benchmarks

        if suite:
            payload = benchmarks.suite_payload(benchmarks.load_suite(config)[1])
        else:
            payload = benchmarks.benchmark_payload(benchmarks.load_config(config)[1])
        e = self.calls("EstimateJob", pb.EstimateJobRequest(device=device, payload=payload)).estimate
        return {
            "device": device,
            "jobs": e.jobs,
            "circuits": e.circuits,
            "total_shots": e.total_shots,
            "max_qubits": e.max_qubits,
            "total_one_qubit_gates": e.total_one_qubit_gates,
            "total_two_qubit_gates": e.total_two_qubit_gates,
            "total_multi_qubit_gates": e.total_multi_qubit_gates,
            "total_measurements": e.total_measurements,
            "total_resets": e.total_resets,
            "total_hqc": e.total_hqc,
            "cost": e.cost,
            "cost_unit": e.cost_unit,
            "cost_basis": e.cost_basis,
            "params": _json.loads(e.params_json) if e.params_json else None,
            "per_circuit": [
                {
                    "qubits": c.qubits,
                    "depth": c.depth,
                    "one_qubit_gates": c.one_qubit_gates,
                    "two_qubit_gates": c.two_qubit_gates,
                    "multi_qubit_gates": c.multi_qubit_gates,
                    "measurements": c.measurements,
                    "resets": c.resets,
                    "shots": c.shots,
                    "hqc": c.hqc,
                    "benchmark": c.benchmark,
                }
                for c in e.per_circuit
            ],
        }

    def get_result(self, job_id: str, refresh: bool = False, task_id: str | None = None):
        """A circuit or benchmark job's results (`qsched.benchmarks.Results`): counts per provider task
        and the metriq-gym export record(s). Answered from the scheduler's cache unless refresh=True,
        which fetches them again through the gateway."""
        from qsched.benchmarks import Results

        request = pb.GetJobResultRequest(job_id=job_id, task_id=task_id or "", refresh=refresh)
        return Results.from_response(self.calls("GetJobResult", request))

    def cancel_and_delete(self, job_id: str, wait_timeout: float | None = 60.0) -> dict[str, Any]:
        """Remove a job of any kind: a job still queued or running is cancelled first (its provider tasks
        are cancelled by the scheduler) and waited for until it is terminal, then its record is deleted.
        Returns {"job_id", "cancelled": bool, "state": the state it ended in}."""
        job = self.get_job(job_id)
        cancelled = False
        if not c.is_terminal(job.state):
            try:
                self.cancel_job(job_id, "deleted by its owner")
                cancelled = True
            except QschedError as error:
                if error.reason != "JOB_ALREADY_FINISHED":
                    raise
            job = self.get_job(job_id)
            if not c.is_terminal(job.state):
                job = self.wait_for_completion(job_id, timeout=wait_timeout, verbose=False).job or job
        self.delete_job(job_id)
        return {"job_id": job_id, "cancelled": cancelled, "state": c.SEED_STATUS.get(job.state, "unknown")}

    # -- reservations and decisions (docs/scheduling.md) ---------------------------------------------
    def reserve(
        self,
        device: str,
        start: datetime,
        end: datetime,
        kind: str = "exclusive",
        holders: list[str] | None = None,
        hard_end: bool = False,
        note: str = "",
    ) -> dict[str, Any]:
        """Book a window of the device's calendar: kind "exclusive" (only the holders' jobs start
        inside; default holder: you), "calibration" or "maintenance" (operators). Refused with
        RESERVATION_OVERLAP (metadata reservation_id) when it overlaps another window."""
        request = pb.CreateReservationRequest(
            device=device,
            kind=pb.Reservation.Kind.Value(f"KIND_{kind.upper()}"),
            start_time=timestamp(start),
            end_time=timestamp(end),
            holders=list(holders or ()),
            hard_end=hard_end,
            note=note,
        )
        return reservation_dict(self.calls("CreateReservation", request).reservation)

    def reservations(self, device: str | None = None) -> list[dict[str, Any]]:
        """The windows that have not ended, soonest first."""
        response = self.calls("ListReservations", pb.ListReservationsRequest(device=device or ""))
        return [reservation_dict(r) for r in response.reservations]

    def cancel_reservation(self, reservation_id: str) -> dict[str, Any]:
        request = pb.CancelReservationRequest(reservation_id=reservation_id)
        return reservation_dict(self.calls("CancelReservation", request).reservation)

    def open_session(
        self,
        device: str,
        max_length: float = 3600.0,
        idle_timeout: float = 300.0,
        on_failure: str = "continue",
    ) -> dict[str, Any]:
        """Open a session on the device (seconds): while it is open only jobs submitted with its id
        (`submit_job(..., session=id)`) start there. Prefer `session()`, which closes it."""
        request = pb.OpenSessionRequest(
            device=device,
            failure_policy=pb.DeviceSession.FailurePolicy.Value(f"FAILURE_POLICY_{on_failure.upper()}"),
        )
        request.max_length.FromTimedelta(timedelta(seconds=max_length))
        request.idle_timeout.FromTimedelta(timedelta(seconds=idle_timeout))
        return session_dict(self.calls("OpenSession", request).session)

    def close_session(self, session_id: str) -> dict[str, Any]:
        """Its queued jobs still run, then the device goes back to the queue."""
        return session_dict(self.calls("CloseSession", pb.CloseSessionRequest(session_id=session_id)).session)

    def cancel_session(self, session_id: str) -> dict[str, Any]:
        """Its queued jobs are cancelled; it ends at once."""
        return session_dict(
            self.calls("CancelSession", pb.CancelSessionRequest(session_id=session_id)).session
        )

    def sessions(self, device: str | None = None) -> list[dict[str, Any]]:
        response = self.calls("ListSessions", pb.ListSessionsRequest(device=device or ""))
        return [session_dict(s) for s in response.sessions]

    @contextlib.contextmanager
    def session(
        self,
        device: str | None = None,
        max_length: float = 3600.0,
        idle_timeout: float = 300.0,
        on_failure: str = "continue",
    ) -> Iterator[DeviceSession]:
        """A session as a context manager: `with client.session("qick") as s: s.submit_job(...)`.
        Leaving the block closes it (its queued jobs still run); an exception cancels it."""
        opened = self.open_session(device or self.device, max_length, idle_timeout, on_failure)
        handle = DeviceSession(self, opened["session_id"], opened["device"])
        try:
            yield handle
        except BaseException:
            self.cancel_session(handle.session_id)
            raise
        self.close_session(handle.session_id)

    def usage(self, device: str | None = None) -> dict[str, Any]:
        """Each user's recent device-seconds per device (as fair share sees them): {"usage": [{device,
        owner, usage_seconds}], "half_life": timedelta, "fair_share_devices": [...]}."""
        response = self.calls("ListUsage", pb.ListUsageRequest(device=device or ""))
        return {
            "usage": [
                {"device": u.device, "owner": u.owner, "usage_seconds": u.usage_seconds}
                for u in response.usage
            ],
            "half_life": response.half_life.ToTimedelta(),
            "fair_share_devices": list(response.fair_share_devices),
        }

    def why(self, job_id: str) -> dict[str, Any]:
        """Why a job runs when it does: for a queued job the rule that holds it (or its place in
        line), for a started one the reason stored with each run."""
        job = self.get_job(job_id)
        out: dict[str, Any] = {"job_id": job_id, "status": c.SEED_STATUS.get(job.state, "unknown")}
        if job.HasField("waiting_reason"):
            out["waiting"] = reason_dict(job.waiting_reason)
            out["queue_position"] = job.queue_position
            if job.HasField("estimated_start_time"):
                out["estimated_start"] = job.estimated_start_time.ToDatetime(tzinfo=UTC)
        runs = self.calls("ListRuns", pb.ListRunsRequest(job_id=job_id)).runs if job.run_count else []
        out["runs"] = [
            {"task_id": r.task_id, "attempt": r.attempt, **reason_dict(r.reason)}
            for r in runs
            if r.HasField("reason")
        ]
        return out


@dataclass
class DeviceSession:
    """An open session (JobClient.session): submit_job here joins it."""

    client: JobClient
    session_id: str
    device: str

    def submit_job(
        self, experiment_class: str, experiment_module: str, expt_config: dict[str, Any], **kw: Any
    ) -> str:
        labels = {**(kw.pop("labels", None) or {}), "session": self.session_id}
        return self.client.submit_job(
            experiment_class, experiment_module, expt_config, device=self.device, labels=labels, **kw
        )


__all__ = ["DeviceSession", "JobClient", "JobResult"]


def reason_dict(reason: Any) -> dict[str, Any]:
    import json

    return {
        "policy": reason.policy,
        "summary": reason.summary,
        "details": json.loads(reason.details_json) if reason.details_json else {},
    }


def reservation_dict(r: Any) -> dict[str, Any]:
    return {
        "reservation_id": r.reservation_id,
        "device": r.device,
        "kind": pb.Reservation.Kind.Name(r.kind).removeprefix("KIND_").lower(),
        "start": r.start_time.ToDatetime(tzinfo=UTC),
        "end": r.end_time.ToDatetime(tzinfo=UTC),
        "holders": list(r.holders),
        "hard_end": r.hard_end,
        "note": r.note,
        "created_by": r.created_by,
        "cancelled": r.cancelled,
    }


def device_dict(device: Any) -> dict[str, Any]:
    state = pb.DeviceQueueState.Name(device.queue_state).removeprefix("DEVICE_QUEUE_STATE_").lower()
    return {
        "name": device.name,
        "queued": device.queued,
        "running_job_id": device.running_job_id,
        "queue_state": "open" if state == "unspecified" else state,
        "hold_reason": device.hold_reason,
        "held_by": device.held_by,
        "hold_time": device.hold_time.ToDatetime(tzinfo=UTC) if device.HasField("hold_time") else None,
        # Lab devices: "connected", "connecting" or "unreachable" ("" unknown), since when and why;
        # with scheduler replicas, the one that dispatches the device.
        "executor": pb.ExecutorConnection.Name(device.executor_connection)
        .removeprefix("EXECUTOR_CONNECTION_")
        .lower()
        .replace("unspecified", ""),
        "executor_since": device.executor_connection_since.ToDatetime(tzinfo=UTC)
        if device.HasField("executor_connection_since")
        else None,
        "executor_message": device.executor_message,
        "dispatched_by": device.dispatched_by,
        # The calendar window open now and the next one, and the session that has the device.
        "reservation": reservation_dict(device.current_reservation)
        if device.HasField("current_reservation")
        else None,
        "next_reservation": reservation_dict(device.next_reservation)
        if device.HasField("next_reservation")
        else None,
        "session": session_dict(device.current_session) if device.HasField("current_session") else None,
    }


def session_dict(s: Any) -> dict[str, Any]:
    return {
        "session_id": s.session_id,
        "device": s.device,
        "owner": s.owner,
        "state": pb.DeviceSession.State.Name(s.state).removeprefix("STATE_").lower(),
        "open_time": s.open_time.ToDatetime(tzinfo=UTC),
        "max_length": s.max_length.ToTimedelta(),
        "idle_timeout": s.idle_timeout.ToTimedelta(),
        "on_failure": pb.DeviceSession.FailurePolicy.Name(s.failure_policy)
        .removeprefix("FAILURE_POLICY_")
        .lower(),
        "end_reason": s.end_reason,
    }


def _code_dict(run: pb.Run) -> dict[str, Any]:
    """The code that ran a run (docs/experiments.md), as a plain dict: `qsched`, `qick_version`,
    `experiment` (name, version, commit, dirty), `experiment_origin`, `experiment_revision`."""
    from google.protobuf import json_format

    code = json_format.MessageToDict(
        run.code, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    code["experiment_origin"] = code.get("experiment_origin", "").removeprefix("CODE_ORIGIN_").lower()
    return code
