"""`Transport`: the connection a `Client` and its job handles share.

One scheduler address and token, the channels (opened on first use, inside the event loop),
calls that raise the SDK's typed errors, the runs of a job and its data files. Job handles hold
the transport, not the client: a job made by `Client.create_job`, `Client.get_job` or
`Client.load` talks to the scheduler through `job.transport`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc

from qsched import connection
from qsched._pages import collect_async
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.api.jobs.v1 import jobs_pb2_grpc as pb_grpc
from qsched.errors import from_rpc_error


class Transport:
    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        owner: str | None = None,
        call_timeout_s: float = 30.0,
        reconnect_timeout_s: float = 60.0,
    ):
        self.address = connection.scheduler_address(address)
        self.owner = owner or connection.default_owner()
        self.call_timeout_s = call_timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self._token = token
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.JobServiceStub | None = None
        self._sync_channel: grpc.Channel | None = None

    def __repr__(self) -> str:
        return f"Transport({self.address!r})"

    @property
    def channel(self) -> grpc.aio.Channel:
        """The aio channel to the scheduler (opened on first use: call it inside the event loop)."""
        if self._channel is None:
            self._channel = connection.aio_channel(self.address, self._token)
            self._stub = pb_grpc.JobServiceStub(self._channel)
        return self._channel

    @property
    def stub(self) -> pb_grpc.JobServiceStub:
        _ = self.channel
        assert self._stub is not None
        return self._stub

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
        if self._sync_channel is not None:
            self._sync_channel.close()
            self._sync_channel = None

    async def call(self, method: str, request: Any, timeout_s: float | None = None) -> Any:
        """One unary JobService call; a failure raises the matching QschedError."""
        try:
            return await getattr(self.stub, method)(request, timeout=timeout_s or self.call_timeout_s)
        except grpc.RpcError as error:
            raise from_rpc_error(error, self.address) from None

    async def runs(self, job_id: str) -> list[pb.Run]:
        """Every run of the job, oldest first (all pages of ListRuns)."""
        return await collect_async(
            lambda token, size: self.call(
                "ListRuns",
                pb.ListRunsRequest(
                    job_id=job_id, page_size=size, page_token=token, job_view=pb.JOB_VIEW_FULL
                ),
            ),
            lambda page: page.runs,
        )

    async def data_path(self, job_id: str, task_id: str | None = None) -> Path:
        """A local path holding the run's data file (fetched from the scheduler if needed)."""
        from qsched import data

        if self._sync_channel is None:
            self._sync_channel = connection.channel(self.address, self._token)
        stub = pb_grpc.JobServiceStub(self._sync_channel)
        return await asyncio.to_thread(data.locate, stub, job_id, task_id, None, self.call_timeout_s)

    async def load_data(self, job_id: str, task_id: str | None = None):
        """The run's arrays and config (qsched.data.RunData)."""
        from qsched import data

        path = await self.data_path(job_id, task_id)
        return await asyncio.to_thread(data.read, path)
