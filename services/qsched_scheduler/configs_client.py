"""Config versioning, reached over gRPC (qsched.configs.v1.ConfigService): PinConfigs, and the
stream of main revisions (WatchMainRevisions) that keeps a MainRevisions current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import duration_pb2

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc
from qsched.wire import error_info
from qsched_runtime.errors import peer_error
from qsched_runtime.security import PeerCredentials
from qsched_scheduler.config_port import ConfigsUnavailable, PinnedConfig, PinRefused
from qsched_scheduler.main_revisions import (
    CaughtUp,
    MainRevision,
    MainRevisions,
    RequiredTypes,
    Snapshot,
    StreamEvent,
)

log = logging.getLogger(__name__)
PIN_TIMEOUT_S = 10.0

# The main-revisions stream: the config service sends a heartbeat after HEARTBEAT_S of silence; a
# stream silent for SILENCE_S is taken for dead (a half-open connection sends no error).
HEARTBEAT_S = 1.0
SILENCE_S = 3.5
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
# gRPC's own reconnection backoff grows to 120 s by default: a config service back after a long
# outage would be noticed that late.
WATCH_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", int(RECONNECT_MAX_S * 1000)),
]


class GrpcConfigPinner:
    def __init__(self, address: str, credentials: PeerCredentials | None = None):
        self._channel = (credentials or PeerCredentials()).channel(address)
        self._stub = pb_grpc.ConfigServiceStub(self._channel)

    async def pin(
        self, job_id: str, revision_ids: Mapping[str, str], overrides: Mapping[str, str], creator: str
    ) -> list[PinnedConfig]:
        request = pb.PinConfigsRequest(
            job_id=job_id,
            revision_ids=dict(revision_ids),
            overrides={k: v.encode() for k, v in overrides.items()},
            creator=creator,
        )
        try:
            response = await self._stub.PinConfigs(request, timeout=PIN_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, ConfigsUnavailable, PinRefused) from error
        return [PinnedConfig(p.config_type, p.revision_id, p.sha256) for p in response.pinned]

    async def close(self) -> None:
        await self._channel.close()


class GrpcMainRevisionsFeed:
    """Follows WatchMainRevisions into `revisions`: from a snapshot the first time, then resuming
    after the last change applied, so a change committed while the stream was down arrives when
    it is back. `revisions` is not live from the moment the stream fails or falls silent until a
    new one has caught up; reconnects back off from RECONNECT_MIN_S to RECONNECT_MAX_S."""

    def __init__(
        self,
        address: str,
        revisions: MainRevisions,
        credentials: PeerCredentials | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        silence_s: float = SILENCE_S,
    ):
        self._channel = (credentials or PeerCredentials()).channel(address, WATCH_CHANNEL_OPTIONS)
        self._stub = pb_grpc.ConfigServiceStub(self._channel)
        self._revisions = revisions
        self._heartbeat = duration_pb2.Duration()
        self._heartbeat.FromNanoseconds(int(heartbeat_s * 1e9))
        self._silence_s = silence_s
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.streams_opened = 0  # diagnostics: how often it (re)connected

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="configs-main-feed")

    async def close(self) -> None:
        task, self._task = self._task, None
        # The flag as well as the cancel: a cancel that lands as a read completes must not leave
        # the loop reconnecting forever (asyncio.wait_for in 3.11 swallowed such a cancel).
        self._closing = True
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._revisions.lost()
        await self._channel.close()

    async def _follow(self) -> None:
        delay = RECONNECT_MIN_S
        while not self._closing:
            problem = "the stream ended"
            try:
                await self._stream()
            except grpc.aio.AioRpcError as error:
                problem = f"{error.code().name}: {error.details()}"
                if error_info(error).reason == "CHANGE_ID_AHEAD":  # another history: start afresh
                    self._revisions.forget_position()
            except TimeoutError:
                problem = f"silent for {self._silence_s:.1f} s"
            except Exception:  # a bug must not end the feed: the cache would stay stale for good
                log.exception("following the main revisions failed")
                problem = "internal error"
            was_live = self._revisions.live
            self._revisions.lost()
            if self._closing:
                return
            if was_live:
                log.warning(
                    "main-revisions stream lost (%s): pinning through PinConfigs until it is back", problem
                )
            else:
                log.info("main-revisions stream not up (%s); retrying", problem)
            delay = RECONNECT_MIN_S if was_live else min(delay * 2, RECONNECT_MAX_S)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _stream(self) -> None:
        request = pb.WatchMainRevisionsRequest(
            after_change_id=self._revisions.position, heartbeat_interval=self._heartbeat
        )
        call = self._stub.WatchMainRevisions(request)
        self.streams_opened += 1
        try:
            while True:
                async with asyncio.timeout(self._silence_s):
                    message = await call.read()
                if message is grpc.aio.EOF:
                    return
                event = stream_event(message)
                if event is not None:
                    self._revisions.apply(event)
        finally:
            call.cancel()


def stream_event(message: pb.WatchMainRevisionsResponse) -> StreamEvent | None:
    """The event a message carries; None for a kind this scheduler does not know (a newer server)."""
    which = message.WhichOneof("event")
    if which == "change":
        return _main(message.change)
    if which == "heartbeat":
        return CaughtUp(message.heartbeat.change_id)
    if which == "config_types":
        return RequiredTypes(_required(message.config_types.config_types))
    if which == "snapshot":
        snapshot = message.snapshot
        return Snapshot(
            snapshot.change_id,
            _required(snapshot.config_types),
            tuple(_main(m) for m in snapshot.mains),
        )
    return None


def _main(message: pb.MainRevision) -> MainRevision:
    return MainRevision(
        message.change.config_type, message.revision.revision_id, message.revision.sha256, message.change_id
    )


def _required(types: Iterable[pb.ConfigType]) -> frozenset[str]:
    return frozenset(t.name for t in types if t.required_for_lab_runs)
