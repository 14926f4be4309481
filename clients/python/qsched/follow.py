"""Following a job over WatchJob, resuming after a dropped connection.

The scheduler sends a snapshot of the job, then its events in seq order until the job is
terminal. When the stream breaks (network, scheduler restart), the follower waits for the
channel to come back and calls WatchJob again with `after_seq` = the last seq it delivered:
the scheduler replays everything after it, so no event is lost, and events already delivered
are dropped, so none is seen twice. Snapshots after a resume are delivered with `resumed=True`.

With `include_data=True` the terminal event of a succeeded job carries the run's data file
(`Update.data_file`) when the scheduler still has it in memory (small, recently finished files).

Live output: an event with `log` set carries log lines the run wrote (`Update.log_lines`); with
`partial_data=True` the follower also delivers the running run's partial averaged data after each
round (`Update.partial`, a qsched.executor.v1.RunPartialData; not sequenced, never replayed: a
watcher that falls behind gets the latest one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from qsched._common import job_ref
from qsched.api.jobs.v1 import jobs_pb2 as pb
from qsched.errors import DeadlineExceeded, Unavailable, from_rpc_error

# Codes after which a watch is simply called again (it is a read: always safe to repeat).
RESUMABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED}
)
MAX_FAILURES_WITHOUT_PROGRESS = 8
DEFAULT_RECONNECT_TIMEOUT_S = 60.0


@dataclass
class Update:
    """One message of a followed job: a snapshot (`job` set, `event` None) or an event."""

    job: pb.Job | None
    event: pb.JobEvent | None
    resumed: bool = False  # a snapshot sent after a reconnect
    partial: Any = None  # live partial data (a RunPartialData; `job` and `event` are None)
    after_seq: int = 0  # for a partial: the last event seq delivered before it
    data_file: Any = None  # with include_data: the run's whole data file beside the terminal event

    @property
    def state(self) -> int:
        if self.partial is not None:
            return pb.Job.STATE_RUNNING
        return self.event.state if self.event is not None else self.job.state  # type: ignore[union-attr]

    @property
    def seq(self) -> int:
        if self.partial is not None:
            return self.after_seq
        return self.event.seq if self.event is not None else self.job.last_seq  # type: ignore[union-attr]

    @property
    def log_lines(self) -> list[str]:
        """The log lines of a log event (empty for any other update)."""
        if self.event is not None and self.event.HasField("log"):
            return list(self.event.log.lines)
        return []

    def partial_arrays(self) -> dict[str, list[float]]:
        """The partial data's arrays by dataset name (xpts, avgi, avgq, ...); empty otherwise."""
        if self.partial is None:
            return {}
        return {s.name: list(s.values) for s in self.partial.series}


class _Cursor:
    def __init__(self, after_seq: int, connected: bool):
        self.last = after_seq
        self.failures = 0
        self.reconnects = 0
        self.connected = connected  # reached the scheduler before: a failure is a dropped connection

    def resumable(self, error: grpc.RpcError) -> bool:
        if error.code() not in RESUMABLE or self.failures >= MAX_FAILURES_WITHOUT_PROGRESS:
            return False
        return self.connected

    def accept(self, message: pb.WatchJobResponse) -> Update | None:
        self.failures = 0
        self.connected = True
        if message.HasField("partial"):
            return Update(None, None, partial=message.partial, after_seq=self.last)
        if message.HasField("event"):
            if message.event.seq <= self.last:
                return None  # already delivered before the reconnect
            self.last = message.event.seq
            data_file = message.data_file if message.HasField("data_file") else None
            return Update(None, message.event, data_file=data_file)
        resumed = self.reconnects > 0
        if self.last == 0:
            self.last = message.snapshot.last_seq
        return Update(message.snapshot, None, resumed)


def follow(
    stub,
    channel: grpc.Channel,
    job_id: str,
    after_seq: int = 0,
    deadline: float | None = None,
    reconnect_timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S,
    address: str = "",
    connected: bool = False,
    partial_data: bool = False,
    include_data: bool = False,
) -> Iterator[Update]:
    """Blocking follower. `deadline` is a time.monotonic() value; past it DeadlineExceeded is raised.
    A scheduler that cannot be reached at all fails at once (Unavailable) unless `connected`
    says it was reached before; a connection that drops later is resumed. `partial_data`: also
    the running run's partial averaged data after each round (Update.partial). `include_data`:
    the terminal event of a succeeded job may bring its run's data file (Update.data_file, a
    RunDataFile), when the scheduler still holds it in memory."""
    cursor = _Cursor(after_seq, connected)
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, "", f"{job_id} is not finished yet")
        call = stub.WatchJob(
            # a task id works too
            pb.WatchJobRequest(
                after_seq=cursor.last, partial_data=partial_data, include_data=include_data, **job_ref(job_id)
            ),
            timeout=remaining,
            wait_for_ready=cursor.reconnects > 0,
        )
        try:
            for message in call:
                update = cursor.accept(message)
                if update is not None:
                    yield update
            return
        except grpc.RpcError as error:
            if not cursor.resumable(error):
                raise from_rpc_error(error, address) from None
        finally:
            call.cancel()
        cursor.failures += 1
        cursor.reconnects += 1
        wait = reconnect_timeout_s if remaining is None else min(reconnect_timeout_s, max(remaining, 0.01))
        try:
            grpc.channel_ready_future(channel).result(timeout=wait)
        except grpc.FutureTimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(
                    grpc.StatusCode.DEADLINE_EXCEEDED, "", f"{job_id} is not finished yet"
                ) from None
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE,
                "",
                f"lost the connection to the scheduler at {address or 'its address'} "
                f"and could not reconnect within {wait:g} s",
            ) from None


async def follow_async(
    stub,
    channel: grpc.aio.Channel,
    job_id: str,
    after_seq: int = 0,
    reconnect_timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S,
    address: str = "",
    connected: bool = False,
    partial_data: bool = False,
) -> AsyncIterator[Update]:
    """asyncio follower; bound it with asyncio.timeout() (cancelling it cancels the call)."""
    cursor = _Cursor(after_seq, connected)
    while True:
        call = stub.WatchJob(
            pb.WatchJobRequest(after_seq=cursor.last, partial_data=partial_data, **job_ref(job_id)),
            wait_for_ready=cursor.reconnects > 0,
        )
        try:
            async for message in call:
                update = cursor.accept(message)
                if update is not None:
                    yield update
            return
        except grpc.RpcError as error:
            if not cursor.resumable(error):
                raise from_rpc_error(error, address) from None
        finally:
            call.cancel()
        cursor.failures += 1
        cursor.reconnects += 1
        try:
            async with asyncio.timeout(reconnect_timeout_s):
                await channel.channel_ready()
        except TimeoutError:
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE,
                "",
                f"lost the connection to the scheduler at {address or 'its address'} "
                f"and could not reconnect within {reconnect_timeout_s:g} s",
            ) from None
