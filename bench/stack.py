"""A real qsched stack for the benchmarks: `qsched up` (four service processes) on loopback
ports, a fresh data directory (embedded SQLite, simulated board), and the small client helpers
the scenarios share."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from qsched.api.executor.v1 import executor_pb2 as epb
from qsched.api.executor.v1 import executor_pb2_grpc as epb_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOOP = "NoOpExperiment"
BUILTINS = "qsched_hardware.experiments"
UP_TIMEOUT_S = 120.0
TERMINAL = frozenset({pb.Job.STATE_SUCCEEDED, pb.Job.STATE_FAILED, pb.Job.STATE_CANCELLED})
SERVICES = ("scheduler", "configs", "gateway", "executor")
GROUP_LABEL = "bench"  # which scenario a job belongs to (the owner is the stack's token's user)


def channel(address: str, token: str | None = None) -> grpc.Channel:
    """A channel that carries the stack's bearer token (see Stack.start), if there is one."""
    from qsched.credentials import find_token
    from qsched.wire import sync_channel

    return sync_channel(address, find_token(token), None)


def aio_channel(address: str) -> grpc.aio.Channel:
    from qsched.credentials import find_token
    from qsched.wire import aio_channel as make

    return make(address, find_token(), None)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def noop_payload(sleep_s: float = 0.0) -> pb.JobPayload:
    config = json.dumps({"sleep_s": sleep_s}) if sleep_s else "{}"
    return pb.JobPayload(
        lab_experiment=pb.LabExperiment(
            experiment_class=NOOP, experiment_module=BUILTINS, expt_config_json=config
        )
    )


def submit_request(group: str, sleep_s: float = 0.0, priority: int = 0, device: str = "qick"):
    """A SubmitJob request as the SDK builds it (a fresh request_id every time). The owner is
    the caller (the stack's token); `group` goes into the label `bench`, which `jobs_of` reads."""
    return pb.SubmitJobRequest(
        device=device,
        priority=priority,
        request_id=str(uuid.uuid4()),
        payload=noop_payload(sleep_s),
        labels={GROUP_LABEL: group},
    )


def in_group(job: pb.Job, group: str) -> bool:
    return job.labels.get(GROUP_LABEL) == group


def ts(stamp) -> float:
    """A protobuf Timestamp as Unix seconds (float)."""
    return stamp.seconds + stamp.nanos / 1e9


def iso_ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Stack:
    """`qsched up` in a child process, on its own ports and data directory."""

    data_dir: Path
    addresses: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # extra settings for `qsched up`
    database_url: str = ""  # "": the embedded SQLite database; else `up --database-url`

    def start(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.addresses = {service: f"127.0.0.1:{free_port()}" for service in SERVICES}
        argv = [str(BIN / "qsched"), "up", "--data-dir", str(self.data_dir)]
        for service, address in self.addresses.items():
            argv += [f"--{service}-address", address]
        # One user (the token's) submits everything here, far beyond a user's default quota.
        argv += ["--max-queued-per-user", str(10**9)]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        self.log_path = self.data_dir / "qsched-up.log"
        log = self.log_path.open("ab")
        env = {**os.environ, "GRPC_VERBOSITY": "ERROR", "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("QSCHED_DATABASE_URL", None)  # the embedded SQLite database unless database_url
        # An installation of its own: users and tokens provisioned by this `up` in its data dir.
        for name in ("QSCHED_IDENTITY_DATABASE_URL", "QSCHED_SERVICE_TOKEN", "QSCHED_TOKEN"):
            env.pop(name, None)
            os.environ.pop(name, None)
        # `qsched up` writes the token of the OS user who starts it here; the harness and the
        # client processes it starts (which inherit os.environ) send it with every call.
        os.environ["QSCHED_TOKEN_FILE"] = env["QSCHED_TOKEN_FILE"] = str(self.data_dir / "token")
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
        deadline = time.monotonic() + UP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"qsched up exited ({self.process.returncode}); see {self.log_path}")
            if "qsched is up" in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"qsched up was not up within {UP_TIMEOUT_S:.0f}s; see {self.log_path}")

    @property
    def scheduler(self) -> str:
        return self.addresses["scheduler"]

    @property
    def executor(self) -> str:
        return self.addresses["executor"]

    @property
    def data_root(self) -> Path:
        """Where the stack's executor writes run files: a run's data name is relative to it
        (an absolute path, as older schedulers report, stays itself when joined)."""
        return self.data_dir / "data"

    def service_pids(self) -> dict[str, int]:
        """The pids of the service processes (children of `qsched up`), by service name."""
        assert self.process is not None
        out: dict[str, int] = {}
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            for service in SERVICES:
                if b"qsched_ops.serve" in argv and service.encode() in argv:
                    out[service] = int(pid)
        return out

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Clients:
    """Synchronous stubs for the scheduler and the executor."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.channel = channel(stack.scheduler)
        self.jobs = pb_grpc.JobServiceStub(self.channel)
        # The executor answers services only: the harness reads run timestamps with the
        # scheduler's own credential from the stack's (temporary) data directory.
        service_token = stack.data_dir / "secrets" / "scheduler.token"
        token = service_token.read_text().strip() if service_token.exists() else None
        self.exec_channel = channel(stack.executor, token)
        self.executor = epb_grpc.HardwareExecutorServiceStub(self.exec_channel)

    def close(self) -> None:
        self.channel.close()
        self.exec_channel.close()

    def submit(self, owner: str, sleep_s: float = 0.0, priority: int = 0) -> pb.Job:
        return self.jobs.SubmitJob(submit_request(owner, sleep_s, priority), timeout=60).job

    def get(self, job_id: str) -> pb.Job:
        return self.jobs.GetJob(pb.GetJobRequest(job_id=job_id), timeout=60).job

    def wait_state(self, job_id: str, states, timeout: float = 120.0, poll_s: float = 0.02) -> pb.Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.state in states:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} still {pb.Job.State.Name(job.state)} after {timeout:g}s")
            time.sleep(poll_s)

    def wait_done(self, job_id: str, timeout: float = 120.0, poll_s: float = 0.02) -> pb.Job:
        return self.wait_state(job_id, TERMINAL, timeout, poll_s)

    def queue_head(self, n: int, device: str = "qick") -> list[pb.Job]:
        """The first `n` jobs of the device's queue (the running one first). ListJobs, not
        ListDevices: ListDevices asks the provider gateway, which is slow and would load it."""
        request = pb.ListJobsRequest(view=pb.LIST_VIEW_QUEUE, device=device, page_size=n)
        return list(self.jobs.ListJobs(request, timeout=120).jobs)

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Until the device has nothing queued or running."""
        deadline = time.monotonic() + timeout
        while self.queue_head(1):
            if time.monotonic() > deadline:
                raise TimeoutError(f"device still busy after {timeout:g}s")
            time.sleep(0.1)

    def hold(self, owner: str = "bench-hold") -> pb.Job:
        """Occupy the board with a long no-op (priority 100: it runs next) until `release`."""
        job = self.submit(owner, sleep_s=86_400.0, priority=100)
        return self.wait_state(job.job_id, {pb.Job.STATE_RUNNING} | TERMINAL, timeout=600)

    def release(self, holder: pb.Job) -> None:
        self.jobs.CancelJob(pb.CancelJobRequest(job_id=holder.job_id, reason="bench: release"), timeout=60)

    def exec_updates(self, task_id: str) -> dict[str, float]:
        """The executor's own timestamps of a run ({"started": t, "result": t, ...}), from
        WatchRun (the executor keeps its last 2,000 finished runs)."""
        out: dict[str, float] = {}
        request = epb.WatchRunRequest(task_id=task_id, after_seq=1)
        for message in self.executor.WatchRun(request, timeout=30):
            update = message.update
            out.setdefault(update.WhichOneof("update"), ts(update.time))
        return out

    def jobs_of(self, group: str, limit: int = 100_000) -> list[pb.Job]:
        """Every job of a group (label `bench`), newest first (history view)."""
        out: list[pb.Job] = []
        token = ""
        while len(out) < limit:
            page = self.jobs.ListJobs(
                pb.ListJobsRequest(view=pb.LIST_VIEW_HISTORY, page_size=1000, page_token=token),
                timeout=60,
            )
            out.extend(j for j in page.jobs if in_group(j, group))
            token = page.next_page_token
            if not token:
                break
        return out


def file_times(path: str) -> tuple[float, float]:
    """(start_time, end_time) of a run from its HDF5 file: the executor's board-thread
    timestamps around `Experiment.run` (docs/data-files.md)."""
    import h5py

    with h5py.File(path, "r") as f:
        return iso_ts(str(f.attrs["start_time"])), iso_ts(str(f.attrs["end_time"]))


# ---- an executor of its own, driven over its run queue as the scheduler drives it ----------------------
class ExecutorAlone:
    """A second executor process (its own data directory, board lock and simulated board) that
    trusts the stack's identity database, and a run queue on it with the scheduler's token. No
    scheduler is involved: what it measures is the executor's own per-run cost."""

    def __init__(self, stack: Stack, data_writers: int = 3):
        self.stack = stack
        self.data_dir = stack.data_dir / "executor-alone"
        self.address = f"127.0.0.1:{free_port()}"
        self.data_writers = data_writers
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ExecutorAlone:
        from qsched_core.sql import sqlite_url

        argv = [sys.executable, "-m", "qsched_ops.serve", "executor", "--executor-address", self.address]
        argv += ["--data-dir", str(self.data_dir), "--data-writers", str(self.data_writers)]
        argv += ["--identity-database-url", sqlite_url(self.stack.data_dir / "identity.db")]
        env = {**os.environ, "GRPC_VERBOSITY": "ERROR", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "qsched executor serving on ..."
        if "serving on" not in line:
            raise RuntimeError(f"the lone executor did not start ({line!r}, exit {self.process.poll()})")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cpu_seconds(self) -> tuple[float, float]:
        """(the executor process's CPU seconds, its helper processes' — the data writers)."""
        assert self.process is not None
        tick = os.sysconf("SC_CLK_TCK")

        def cpu(pid: int) -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        def descendants(pid: int) -> list[int]:
            out = []
            for task in Path(f"/proc/{pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    out += [int(child), *descendants(int(child))]
            return out

        return cpu(self.process.pid), sum(cpu(pid) for pid in descendants(self.process.pid))

    def run_queue(self) -> RunQueueSession:
        token = (self.stack.data_dir / "secrets" / "scheduler.token").read_text().strip()
        return RunQueueSession(channel(self.address, token), token)


class RunQueueSession:
    """A synchronous run queue: commands go out from the caller, events are read on a thread."""

    def __init__(self, grpc_channel: grpc.Channel, token: str):
        import itertools
        import queue
        import threading

        from qsched_core.execution import OpenQueue

        self.channel = grpc_channel
        self._outbox: queue.Queue = queue.Queue()
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self.answers: dict[int, Any] = {}
        self.ends: dict[str, Any] = {}  # task id -> terminal ExecutionUpdate
        self.started: dict[str, float] = {}
        self.batches = 0
        self.error: BaseException | None = None
        stub = epb_grpc.HardwareExecutorServiceStub(grpc_channel)
        self._outbox.put(OpenQueue())
        # The channel's interceptors carry the token on unary and server-streaming calls only.
        self._call = stub.RunQueue(self._requests(), metadata=[("authorization", f"Bearer {token}")])
        self._reader = threading.Thread(target=self._read, name="run-queue", daemon=True)
        self._reader.start()

    def _requests(self):
        from qsched_runtime import execution_wire as wire

        while (command := self._outbox.get()) is not None:
            yield wire.command_to_pb(command)

    def _read(self) -> None:
        from qsched_core.execution import QueueOpened, UpdateBatch, UpdateKind
        from qsched_runtime import execution_wire as wire

        try:
            for message in self._call:
                event = wire.event_from_pb(message)
                with self._cond:
                    if isinstance(event, UpdateBatch):
                        self.batches += 1
                        for update in event.updates:
                            if update.kind is UpdateKind.STARTED:
                                self.started[update.task_id] = update.time
                            elif update.terminal:
                                self.ends[update.task_id] = update
                    elif not isinstance(event, QueueOpened):
                        self.answers[event.request_id] = event
                    self._cond.notify_all()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc
        finally:
            with self._cond:
                self._cond.notify_all()

    def enqueue(self, runs: list, after: str) -> Any:
        from qsched_core.execution import EnqueueRuns

        request_id = next(self._ids)
        self._outbox.put(EnqueueRuns(request_id, after, tuple(runs)))
        with self._cond:
            self._cond.wait_for(lambda: request_id in self.answers or self.error is not None, timeout=60)
            if request_id not in self.answers:
                raise RuntimeError(f"no answer to enqueue {request_id}: {self.error}")
            return self.answers.pop(request_id)

    def wait_ends(self, count: int, timeout: float = 300.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.ends) >= count or self.error is not None, timeout):
                raise TimeoutError(f"{len(self.ends)} of {count} runs ended within {timeout:g}s")
            if self.error is not None:
                raise RuntimeError(f"run queue failed: {self.error}")

    def close(self) -> None:
        self._outbox.put(None)
        self._call.cancel()
        self.channel.close()


def noop_run(task_id: str, job_id: str):
    """A no-op ExecutionRequest, as the scheduler sends it."""
    from qsched_core.execution import ExecutionRequest
    from qsched_core.payloads import LabExperiment

    return ExecutionRequest(job_id, task_id, "bench", LabExperiment(NOOP, BUILTINS, "{}"))
