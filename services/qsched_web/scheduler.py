"""The scheduler as one viewer sees it: every call carries that viewer's token, so the scheduler
authorizes each action exactly as it would a CLI call. Answers are plain dicts (the proto's JSON
mapping) ready for the page; failures are `Refused`, one line."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from qsched.api.admin.v1 import admin_pb2, admin_pb2_grpc
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc
from qsched.connection import CHANNEL_OPTIONS
from qsched.credentials import tls_from_env
from qsched.errors import QschedError
from qsched.wire import aio_channel, error_info, sync_channel

CALL_TIMEOUT_S = 10.0
# ListDevices asks the gateway for its providers' devices: slow while the gateway warms up.
LIST_DEVICES_TIMEOUT_S = 60.0
# matplotlib's pyplot keeps global state: one figure at a time.
_PLOT_LOCK = threading.Lock()


class Refused(Exception):
    """A call the scheduler refused (or could not answer), as the page shows it: one line."""

    def __init__(self, code: str, reason: str, details: str):
        super().__init__(f"{code} {reason}: {details}" if reason else f"{code}: {details}")
        self.code = code

    @classmethod
    def of(cls, error: grpc.RpcError | QschedError) -> Refused:
        if isinstance(error, QschedError):
            return cls(error.code.name, error.reason, error.message)
        code = error.code().name if hasattr(error, "code") else "UNKNOWN"
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code, error_info(error).reason, details or "")


def as_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


class Viewer:
    """One logged-in person's connection to the scheduler."""

    def __init__(self, address: str, token: str, cache_dir: Path):
        self.address = address
        self.token = token
        self.cache_dir = cache_dir
        self.channel = aio_channel(address, token, tls_from_env(), CHANNEL_OPTIONS)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def _unary(self, call: Any, request: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
        try:
            return await call(request, timeout=timeout)
        except grpc.RpcError as error:
            raise Refused.of(error) from None

    async def who(self) -> dict[str, Any]:
        return as_dict(await self._unary(self.admin.WhoAmI, admin_pb2.WhoAmIRequest()))

    async def devices(self) -> list[dict[str, Any]]:
        response = await self._unary(self.jobs.ListDevices, pb.ListDevicesRequest(), LIST_DEVICES_TIMEOUT_S)
        return [as_dict(d) for d in response.devices]

    async def queue(self, device: str) -> list[dict[str, Any]]:
        """Running and queued jobs in run order, with positions and estimated starts."""
        jobs: list[dict[str, Any]] = []
        token = ""
        while True:
            request = pb.ListJobsRequest(
                view=pb.LIST_VIEW_QUEUE, device=device, page_size=1000, page_token=token
            )
            page = await self._unary(self.jobs.ListJobs, request)
            jobs += [as_dict(j) for j in page.jobs]
            token = page.next_page_token
            if not token:
                return jobs

    async def job(self, job_id: str) -> dict[str, Any]:
        return as_dict((await self._unary(self.jobs.GetJob, pb.GetJobRequest(job_id=job_id))).job)

    async def result(self, job_id: str) -> dict[str, Any]:
        return as_dict(await self._unary(self.jobs.GetJobResult, pb.GetJobResultRequest(job_id=job_id)))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        request = pb.CancelJobRequest(job_id=job_id, reason="cancelled from the web view")
        return as_dict((await self._unary(self.jobs.CancelJob, request)).job)

    async def device_action(self, name: str, action: str, reason: str = "") -> dict[str, Any]:
        if action == "pause":
            response = await self._unary(
                self.jobs.PauseDevice, pb.PauseDeviceRequest(name=name, reason=reason)
            )
        elif action == "drain":
            response = await self._unary(
                self.jobs.DrainDevice, pb.DrainDeviceRequest(name=name, reason=reason)
            )
        elif action == "resume":
            response = await self._unary(self.jobs.ResumeDevice, pb.ResumeDeviceRequest(name=name))
        else:
            raise ValueError(action)
        return as_dict(response.device)

    async def watch_queue(self, device: str) -> AsyncIterator[pb.WatchQueueResponse]:
        call = self.jobs.WatchQueue(pb.WatchQueueRequest(device=device))
        try:
            async for message in call:
                yield message
        except grpc.RpcError as error:
            raise Refused.of(error) from None
        finally:
            call.cancel()

    async def watch_job(
        self, job_id: str, after_seq: int = 0, partial_data: bool = False
    ) -> AsyncIterator[pb.WatchJobResponse]:
        call = self.jobs.WatchJob(
            pb.WatchJobRequest(job_id=job_id, after_seq=after_seq, partial_data=partial_data)
        )
        try:
            async for message in call:
                yield message
        except grpc.RpcError as error:
            raise Refused.of(error) from None
        finally:
            call.cancel()

    async def job_log(self, job_id: str) -> list[pb.JobEvent]:
        """The job's log events so far (GetJobLog)."""
        return list((await self._unary(self.jobs.GetJobLog, pb.GetJobLogRequest(job_id=job_id))).events)

    async def plot_partial(self, partial: Any, title: str) -> bytes:
        """The same figure `qsched plot` draws, of a running run's partial data (RunPartialData)."""
        return await asyncio.to_thread(_plot_partial, partial, title)

    async def plot(self, job_id: str, task_id: str = "") -> bytes:
        """The PNG `qsched plot` draws for the run's data (fetched over FetchJobData with this
        viewer's token, so the scheduler decides whether they may see it)."""
        return await asyncio.to_thread(self._plot, job_id, task_id)

    def _plot(self, job_id: str, task_id: str) -> bytes:
        from qsched import data
        from qsched.cli.plot import plot_run

        with sync_channel(self.address, self.token, tls_from_env(), CHANNEL_OPTIONS) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            try:
                job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_S).job
                path = data.locate(
                    stub, job_id, task_id or None, cache=self.cache_dir, timeout=CALL_TIMEOUT_S
                )
            except (grpc.RpcError, QschedError) as error:
                raise Refused.of(error) from None
        run = data.read(path)
        what = job.payload.lab_experiment.experiment_class or pb.JobKind.Name(job.kind)
        with _PLOT_LOCK, tempfile.TemporaryDirectory() as tmp:
            out = plot_run(run, Path(tmp) / "plot.png", title=f"{job_id} {what}")
            return out.read_bytes()


def _plot_partial(partial: Any, title: str) -> bytes:
    import numpy as np

    from qsched.cli.plot import plot_run
    from qsched.data import RunData

    run = RunData(Path(f"{partial.task_id}.partial"))
    for series in partial.series:
        run.arrays[series.name] = np.asarray(series.values, dtype=float)
        labels = {k: v for k, v in (("long_name", series.long_name), ("units", series.units)) if v}
        if labels:
            run.dataset_attrs[series.name] = labels
    with _PLOT_LOCK, tempfile.TemporaryDirectory() as tmp:
        return plot_run(run, Path(tmp) / "plot.png", title=title).read_bytes()
