"""`Client`: the asyncio entry point, creating and loading job handles.

async with Client(default_device="qick") as client:
    job = client.create_job(experiment="qsched_hardware.experiments.AmplitudeRabiExperiment",
                            config={"expts": 51, "reps": 1000})
    outputs = await job.execute(timeout_s=600)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from qsched import _common as c
from qsched.aio import snapshot
from qsched.aio.job import CompositeJob, Job
from qsched.aio.transport import Transport
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.errors import Unimplemented

MAX_BROADCAST_ENV = "QSCHED_MAX_BROADCAST_JOBS"
DEFAULT_MAX_BROADCAST = 200


def _max_broadcast() -> int:
    try:
        return int(os.environ.get(MAX_BROADCAST_ENV, DEFAULT_MAX_BROADCAST))
    except ValueError:
        return DEFAULT_MAX_BROADCAST


def _broadcast(values: dict[str, Any]) -> list[dict[str, Any]] | None:
    """None when no argument is a list; else one dict per child (lengths equal or 1)."""
    lists = {k: v for k, v in values.items() if isinstance(v, list)}
    if not lists:
        return None
    for key, value in lists.items():
        if not value:
            raise ValueError(f"{key} is an empty list")
    lengths = {len(v) for v in lists.values()} - {1}
    if len(lengths) > 1:
        shown = ", ".join(f"{k}={len(v)}" for k, v in lists.items())
        raise ValueError(f"list arguments must have equal lengths (or length 1): {shown}")
    n = lengths.pop() if lengths else 1
    limit = _max_broadcast()
    if n > limit:
        raise ValueError(f"{n} jobs requested; at most {limit} per call ({MAX_BROADCAST_ENV})")
    children = []
    for i in range(n):
        child = {}
        for key, value in values.items():
            if isinstance(value, list):
                child[key] = value[i] if len(value) > 1 else value[0]
            else:
                child[key] = value
        children.append(child)
    return children


class Client:
    """Talks to the scheduler; `async with Client(...)` or `await Client(...).open()` / `close()`.
    Its connection is `transport`, which the job handles it makes share."""

    def __init__(
        self,
        address: str | None = None,
        default_device: str | None = None,
        *,
        owner: str | None = None,
        max_concurrency: int = 8,
        reconnect_timeout_s: float = 60.0,
        call_timeout_s: float = 30.0,
        token: str | None = None,
    ):
        self.transport = Transport(
            address,
            token=token,
            owner=owner,
            call_timeout_s=call_timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
        )
        self._default_device = default_device
        self.max_concurrency = max_concurrency

    # -- lifecycle -------------------------------------------------------------------------------------
    async def open(self) -> Client:
        _ = self.transport.channel
        return self

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> Client:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Client({self.address!r}, default_device={self._default_device!r})"

    @property
    def address(self) -> str:
        return self.transport.address

    @property
    def owner(self) -> str:
        return self.transport.owner

    @property
    def call_timeout_s(self) -> float:
        return self.transport.call_timeout_s

    @property
    def reconnect_timeout_s(self) -> float:
        return self.transport.reconnect_timeout_s

    @property
    def channel(self) -> grpc.aio.Channel:
        return self.transport.channel

    @property
    def stub(self) -> pb_grpc.JobServiceStub:
        return self.transport.stub

    # -- devices ---------------------------------------------------------------------------------------
    @property
    def default_device(self) -> str | None:
        return self._default_device

    def set_default_device(self, device: str | None) -> None:
        self._default_device = device

    # The OQC SDK's names.
    default_qpu_id = default_device
    set_default_qpu = set_default_device

    async def list_devices(self) -> list[dict[str, Any]]:
        """Every device the scheduler queues for: name, kinds, queued, running_job_id, typical_run_s."""
        response = await self.transport.call("ListDevices", pb.ListDevicesRequest())
        return [
            {
                "name": d.name,
                "id": d.name,
                "kinds": [pb.JobKind.Name(k).removeprefix("JOB_KIND_").lower() for k in d.kinds],
                "queued": d.queued,
                "running_job_id": d.running_job_id or None,
                "typical_run_s": d.typical_run_duration.ToTimedelta().total_seconds(),
            }
            for d in response.devices
        ]

    list_qpus = list_devices

    # -- jobs ------------------------------------------------------------------------------------------
    def create_job(
        self,
        *,
        experiment: str | Sequence[str] | list[Any] | None = None,
        program: str | list[str] | None = None,
        config: Any = None,
        device: str | list[str] | None = None,
        qpu_id: str | list[str] | None = None,
        shots: int | None = None,
        priority: int = 0,
        labels: dict[str, str] | None = None,
        config_revisions: dict[str, str] | None = None,
        fetch_diagnostics: bool = False,
        max_concurrency: int | None = None,
    ) -> Job | CompositeJob:
        """A job handle (nothing is sent until submit/execute).

        Lab job: `experiment="module.Class"` (or a (module, class) tuple) and `config` = the
        expt_config dict. Circuit job: `program` = OpenQASM source. The device is `device`
        (or `qpu_id`), else the client's default; with neither, ValueError. Any list among
        experiment, program, config and device makes a CompositeJob of the broadcast combinations
        (lengths equal or 1; a tuple experiment is one experiment, not a list)."""
        if device is not None and qpu_id is not None and device != qpu_id:
            raise ValueError("give device= or qpu_id=, not both")
        target = device if device is not None else qpu_id
        if (experiment is None) == (program is None):
            raise ValueError("give exactly one of experiment= (a lab job) or program= (circuits)")
        values = {"experiment": experiment, "program": program, "config": config, "device": target}
        children = _broadcast(values)

        def make(v: dict[str, Any]) -> Job:
            dev = v["device"] if v["device"] is not None else self._default_device
            if not dev:
                raise ValueError("no device: pass device= (or qpu_id=) or set a default device")
            return Job(
                self.transport,
                device=dev,
                experiment=v["experiment"],
                program=v["program"],
                config=v["config"],
                shots=shots,
                priority=priority,
                labels=labels,
                config_revisions=config_revisions,
                fetch_diagnostics=fetch_diagnostics,
                owner=self.owner,
            )

        if children is None:
            return make(values)
        jobs = [make(v) for v in children]
        return CompositeJob(jobs, max_concurrency=max_concurrency or self.max_concurrency)

    async def get_job(self, job_id: str, *, fetch_diagnostics: bool = False) -> Job:
        """A handle on a job already on the scheduler (e.g. submitted from the CLI), by its job id or
        by a task id (`job.task_id`, which a job has from submit: it can be followed and cancelled by
        it before it starts); its history is rebuilt from the job's runs when the scheduler offers
        ListRuns."""
        current = (await self.transport.call("GetJob", pb.GetJobRequest(**c.job_ref(job_id)))).job
        try:
            runs = await self.transport.runs(current.job_id)
        except Unimplemented:
            runs = []
        return Job.from_server(self.transport, current, runs, fetch_diagnostics=fetch_diagnostics)

    # -- persistence -----------------------------------------------------------------------------------
    def load(self, path: str | Path) -> Job | CompositeJob:
        """A job or composite saved with `save(path)`, attached to this client."""
        return self.from_snapshot(snapshot.read(path), str(path))

    def from_snapshot(self, data: dict[str, Any], where: str = "snapshot") -> Job | CompositeJob:
        if snapshot.kind_of(data, where) == "job":
            return Job.from_snapshot(self.transport, data, where)
        return CompositeJob.from_snapshot(self.transport, data, where)

    # -- data ------------------------------------------------------------------------------------------
    async def data_path(self, job_id: str, task_id: str | None = None) -> Path:
        """A local path holding the run's data file (fetched from the scheduler if needed)."""
        return await self.transport.data_path(job_id, task_id)

    async def load_data(self, job_id: str, task_id: str | None = None):
        """The run's arrays and config (qsched.data.RunData)."""
        return await self.transport.load_data(job_id, task_id)


__all__ = ["Client"]
