"""The scheduler's main-revisions cache fed by a real config service (GrpcMainRevisionsFeed over
WatchMainRevisions): a push shows in the cache; a stopped config service makes it not live; a
restarted one is resumed after the last change seen, and a change committed meanwhile arrives."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc
from qsched_configs import server as configs_server
from qsched_configs.domain import ContentType, NewRevision
from qsched_configs.store.sql import SqlConfigStore
from qsched_core.config import Endpoints, ServiceConfig
from qsched_core.execution import PinnedRevision
from qsched_core.payloads import LabExperiment
from qsched_core.sql import make_engine
from qsched_runtime.security import PeerCredentials
from qsched_runtime.server import Registration, start_server
from qsched_scheduler.configs_client import GrpcMainRevisionsFeed
from qsched_scheduler.main_revisions import (
    CaughtUp,
    MainMoved,
    MainRevision,
    MainRevisions,
    RequiredTypes,
    StreamEvent,
)
from tests.support.identity import authed_channel
from tests.support.processes import free_port
from tests.support.waiting import eventually

HW = "hardware_config"
RABI = LabExperiment("AmplitudeRabiExperiment", "qsched_hardware.experiments")


class RecordedRevisions(MainRevisions):
    """The cache, remembering what the stream fed it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[StreamEvent] = []

    def apply(self, event: StreamEvent) -> None:
        self.events.append(event)
        super().apply(event)


@contextlib.asynccontextmanager
async def config_service(address: str, data_dir: Path, url: str) -> AsyncIterator[None]:
    """The config service as `qsched serve configs` builds it, at a fixed address (so it can come back)."""
    config = ServiceConfig(
        service="configs", endpoints=Endpoints(configs=address), data_dir=data_dir, configs_database_url=url
    )
    handle = await configs_server.build(config)
    server = await start_server(config.listen, handle.registrations, handle.security)
    await handle.start()
    try:
        yield
    finally:
        await server.stop(0)
        await handle.stop()


async def push(address: str, content: bytes) -> pb.ConfigRevision:
    async with authed_channel(address) as channel:
        stub = configs_pb2_grpc.ConfigServiceStub(channel)
        try:
            etag = (await stub.GetMain(pb.GetMainRequest(config_type=HW))).etag
        except grpc.aio.AioRpcError:
            etag = ""
        request = pb.PushToMainRequest(
            config_type=HW, content=content, original_filename="hw.yml", creator="alice", etag=etag
        )
        return (await stub.PushToMain(request)).revision


def pinned(revision: pb.ConfigRevision) -> tuple[PinnedRevision, ...]:
    return (PinnedRevision(HW, revision.revision_id, revision.sha256),)


async def test_the_cache_follows_pushes_goes_stale_with_the_service_and_catches_up(
    tmp_path: Path, empty_db_url: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    revisions = RecordedRevisions()
    moves: list[MainMoved] = []
    revisions.subscribe(moves.append)
    feed = GrpcMainRevisionsFeed(address, revisions, PeerCredentials(os.environ["QSCHED_SERVICE_TOKEN"]))
    try:
        async with config_service(address, tmp_path / "configs", empty_db_url):
            v1 = await push(address, b"qubit:\n  pi_gain: 0.40\n")
            feed.start()
            assert await revisions.wait_live(10)
            assert revisions.pin(RABI) == pinned(v1)

            v2 = await push(address, b"qubit:\n  pi_gain: 0.47\n")

            async def shows_v2() -> bool:
                return revisions.pin(RABI) == pinned(v2)

            await eventually(shows_v2)
            assert moves[-1] == MainMoved(revisions.version, frozenset({HW}))
            position = revisions.position

        # The config service is gone: nothing is pinned from memory.
        async def stale() -> bool:
            return not revisions.live

        await eventually(stale)
        assert revisions.pin(RABI) is None

        # Main moves while the stream is down (written by another replica of the service).
        store = SqlConfigStore(make_engine(empty_db_url))
        try:
            text = b"qubit:\n  pi_gain: 0.52\n"
            new = NewRevision(HW, text, hashlib.sha256(text).hexdigest(), ContentType.YAML, "", "carol")
            v3 = store.push_to_main(new, store.get_main(HW).etag, datetime.now(UTC)).state.revision
        finally:
            store.close()

        streams = feed.streams_opened
        revisions.events.clear()
        async with config_service(address, tmp_path / "configs", empty_db_url):

            async def live_again() -> bool:
                return revisions.live

            await eventually(live_again)
            assert revisions.pin(RABI) == (PinnedRevision(HW, v3.revision_id, v3.sha256),)
            # Resumed after the last change seen (no snapshot): the types, the missed change, caught up.
            assert feed.streams_opened > streams
            assert revisions.events[:3] == [
                RequiredTypes(frozenset({HW})),
                MainRevision(HW, v3.revision_id, v3.sha256, position + 1),
                CaughtUp(position + 1),
            ]
            assert moves[-1].config_types == {HW}
    finally:
        await feed.close()
    assert not revisions.live


class SilentConfigs(configs_pb2_grpc.ConfigServiceServicer):
    """A config service whose stream catches up once and then goes quiet (a half-open connection
    looks like this: no heartbeat, no error)."""

    def __init__(self) -> None:
        self.requests: list[pb.WatchMainRevisionsRequest] = []

    async def WatchMainRevisions(self, request, context):  # type: ignore[no-untyped-def,override]
        self.requests.append(request)
        main = pb.MainRevision(
            change_id=4,
            change=pb.MainChange(config_type=HW, to_revision_id="CFG-HW-20260114-00004"),
            revision=pb.ConfigRevision(revision_id="CFG-HW-20260114-00004", config_type=HW, sha256="ab"),
        )
        types = [pb.ConfigType(name=HW, required_for_lab_runs=True)]
        if request.after_change_id == 0:
            snapshot = pb.MainRevisionsSnapshot(change_id=4, config_types=types, mains=[main])
            yield pb.WatchMainRevisionsResponse(snapshot=snapshot)
        else:
            yield pb.WatchMainRevisionsResponse(config_types=pb.ConfigTypeList(config_types=types))
        yield pb.WatchMainRevisionsResponse(heartbeat=pb.WatchHeartbeat(change_id=4))
        await asyncio.Event().wait()  # then nothing, ever


async def test_a_silent_stream_is_taken_for_dead_and_resumed() -> None:
    fake = SilentConfigs()
    name = pb.DESCRIPTOR.services_by_name["ConfigService"].full_name
    registration = Registration(name, lambda s: configs_pb2_grpc.add_ConfigServiceServicer_to_server(fake, s))
    server = await start_server("127.0.0.1:0", [registration])
    revisions = RecordedRevisions()
    feed = GrpcMainRevisionsFeed(f"127.0.0.1:{server.port}", revisions, heartbeat_s=0.1, silence_s=0.3)
    try:
        feed.start()
        assert await revisions.wait_live(10)
        assert revisions.pin(RABI) == (PinnedRevision(HW, "CFG-HW-20260114-00004", "ab"),)

        # The silence ends the first stream; the second resumes after 4 and catches up again (the
        # request reaches the server before its answer reaches the feed: wait for the answer).
        await eventually(lambda: CaughtUp(4) in revisions.events[2:], what="the resumed stream catching up")
        assert [r.after_change_id for r in fake.requests[:2]] == [0, 4]
    finally:
        await feed.close()
        await server.stop(0)
