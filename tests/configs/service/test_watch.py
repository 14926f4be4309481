"""ConfigService.WatchMainRevisions through real gRPC, on SQLite and PostgreSQL: the snapshot,
live changes in commit order, heartbeats, resuming after a change id (also across a change
committed while nobody watched, and one committed by another service process on the same
database), type registrations, bad requests, and who may watch."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc
from qsched.wire import error_info
from qsched_configs.domain import ContentType, NewRevision
from qsched_configs.store.sql import SqlConfigStore
from qsched_core.sql import make_engine
from tests.configs.conftest import configs_service
from tests.support.identity import authed_channel
from tests.support.waiting import eventually

HW = "hardware_config"
MP = "multiphoton_config"
Stub = configs_pb2_grpc.ConfigServiceStub
READ_TIMEOUT_S = 10.0


@pytest.fixture
async def service(tmp_path: Path, sql_url: str) -> AsyncIterator[tuple[Stub, str, str]]:
    """(stub, address, database url): the service on a migrated database of each backend."""
    async with (
        configs_service(tmp_path / "data", configs_database_url=sql_url) as address,
        authed_channel(address) as channel,
    ):
        yield configs_pb2_grpc.ConfigServiceStub(channel), address, sql_url


def watch(stub: Stub, after: int = 0, heartbeat_s: float = 0) -> grpc.aio.UnaryStreamCall:
    interval = duration_pb2.Duration()
    interval.FromNanoseconds(int(heartbeat_s * 1e9))
    return stub.WatchMainRevisions(
        pb.WatchMainRevisionsRequest(after_change_id=after, heartbeat_interval=interval)
    )


async def next_event(
    call: grpc.aio.UnaryStreamCall, kind: str | None = None
) -> pb.WatchMainRevisionsResponse:
    """The next message (skipping heartbeats unless `kind` is "heartbeat")."""
    while True:
        message = await asyncio.wait_for(call.read(), READ_TIMEOUT_S)
        assert message is not grpc.aio.EOF, "the stream ended"
        which = message.WhichOneof("event")
        if which == "heartbeat" and kind != "heartbeat":
            continue
        if kind is not None:
            assert which == kind, message
        return message


async def push(stub: Stub, content: bytes, config_type: str = HW) -> pb.PushToMainResponse:
    try:
        etag = (await stub.GetMain(pb.GetMainRequest(config_type=config_type))).etag
    except grpc.aio.AioRpcError:
        etag = ""
    request = pb.PushToMainRequest(
        config_type=config_type, content=content, original_filename="c.yml", creator="alice", etag=etag
    )
    return await stub.PushToMain(request)


def yaml_revision(text: bytes, creator: str) -> NewRevision:
    return NewRevision(HW, text, hashlib.sha256(text).hexdigest(), ContentType.YAML, "", creator)


# -- the snapshot and live changes ---------------------------------------------------------------------------
async def test_a_snapshot_of_every_type_then_each_change_as_it_commits(service) -> None:
    stub, _, _ = service
    hw = await push(stub, b"qubit: 1\n")
    mp = await push(stub, b"mp: 1\n", MP)
    call = watch(stub)
    snapshot = (await next_event(call, "snapshot")).snapshot
    assert {t.name: t.required_for_lab_runs for t in snapshot.config_types} == {
        HW: True,
        MP: False,
        "floquet_storage_swap": False,
        "man1_storage_swap": False,
    }
    mains = {m.change.config_type: m for m in snapshot.mains}
    assert sorted(mains) == [HW, MP]
    assert mains[HW].revision.revision_id == hw.revision.revision_id
    assert mains[HW].revision.sha256 == hashlib.sha256(b"qubit: 1\n").hexdigest()
    assert mains[MP].revision.revision_id == mp.revision.revision_id
    assert snapshot.change_id == mains[MP].change_id > mains[HW].change_id > 0
    # Caught up at once: the heartbeat names the snapshot's position.
    assert (await next_event(call, "heartbeat")).heartbeat.change_id == snapshot.change_id

    v2 = await push(stub, b"qubit: 2\n")
    change = (await next_event(call, "change")).change
    assert (change.change.config_type, change.change.from_revision_id, change.revision.revision_id) == (
        HW,
        hw.revision.revision_id,
        v2.revision.revision_id,
    )
    assert change.change_id == snapshot.change_id + 1
    assert change.revision.sha256 == hashlib.sha256(b"qubit: 2\n").hexdigest()
    assert change.change.changed_by == "alice"
    # SetMain back is a change too; a no-op SetMain is not.
    etag = (await stub.GetMain(pb.GetMainRequest(config_type=HW))).etag
    back = pb.SetMainRequest(revision_id=hw.revision.revision_id, etag=etag, changed_by="alice")
    etag = (await stub.SetMain(back)).etag
    again = pb.SetMainRequest(revision_id=hw.revision.revision_id, etag=etag, changed_by="alice")
    assert not (await stub.SetMain(again)).changed
    await push(stub, b"mp: 2\n", MP)
    seen = [(await next_event(call, "change")).change for _ in range(2)]
    assert [(c.change_id, c.change.config_type, c.change.to_revision_id) for c in seen] == [
        (change.change_id + 1, HW, hw.revision.revision_id),
        (change.change_id + 2, MP, seen[1].revision.revision_id),
    ]
    call.cancel()


async def test_an_empty_history_snapshots_no_mains(service) -> None:
    stub, _, _ = service
    call = watch(stub)
    snapshot = (await next_event(call, "snapshot")).snapshot
    assert snapshot.change_id == 0 and not snapshot.mains and len(snapshot.config_types) == 4
    assert (await next_event(call, "heartbeat")).heartbeat.change_id == 0
    first = await push(stub, b"qubit: 1\n")
    change = (await next_event(call, "change")).change
    assert (change.change_id, change.change.from_revision_id, change.revision.revision_id) == (
        1,
        "",
        first.revision.revision_id,
    )
    call.cancel()


async def test_heartbeats_keep_coming_while_nothing_changes(service) -> None:
    stub, _, _ = service
    await push(stub, b"qubit: 1\n")
    call = watch(stub, heartbeat_s=0.1)
    position = (await next_event(call, "snapshot")).snapshot.change_id
    beats = [(await next_event(call, "heartbeat")).heartbeat.change_id for _ in range(3)]
    assert beats == [position] * 3
    call.cancel()


# -- resuming ------------------------------------------------------------------------------------------------
async def test_resume_replays_the_changes_after_the_given_change_id(service) -> None:
    stub, _, _ = service
    pushed = [await push(stub, f"qubit: {i}\n".encode()) for i in range(4)]
    call = watch(stub, after=2)
    types = (await next_event(call, "config_types")).config_types
    assert len(types.config_types) == 4
    replay = [(await next_event(call, "change")).change for _ in range(2)]
    assert [(c.change_id, c.revision.revision_id) for c in replay] == [
        (3, pushed[2].revision.revision_id),
        (4, pushed[3].revision.revision_id),
    ]
    assert (await next_event(call, "heartbeat")).heartbeat.change_id == 4
    call.cancel()


async def test_a_change_committed_while_disconnected_is_delivered_on_resume(service) -> None:
    stub, _, _ = service
    await push(stub, b"qubit: 1\n")
    first = watch(stub)
    last_seen = (await next_event(first, "snapshot")).snapshot.change_id
    first.cancel()
    missed = await push(stub, b"qubit: 2\n")  # nobody watches now
    resumed = watch(stub, after=last_seen)
    await next_event(resumed, "config_types")
    change = (await next_event(resumed, "change")).change
    assert (change.change_id, change.revision.revision_id) == (last_seen + 1, missed.revision.revision_id)
    assert (await next_event(resumed, "heartbeat")).heartbeat.change_id == last_seen + 1
    resumed.cancel()


async def test_a_change_committed_by_another_process_on_the_same_database(service, tmp_path) -> None:
    """A second config-service replica (its own process state, the same database): its watchers
    learn the other's changes from the history table (the poll), not from a notification."""
    stub, _, url = service
    async with (
        configs_service(tmp_path / "replica", configs_database_url=url) as other_address,
        authed_channel(other_address) as channel,
    ):
        other = configs_pb2_grpc.ConfigServiceStub(channel)
        call = watch(other)
        position = (await next_event(call, "snapshot")).snapshot.change_id
        pushed = await push(stub, b"qubit: from the first replica\n")
        change = (await next_event(call, "change")).change
        assert (change.change_id, change.revision.revision_id) == (position + 1, pushed.revision.revision_id)
        call.cancel()


async def test_a_change_written_by_another_writer_is_never_skipped(service) -> None:
    """Changes stored outside this process (the store used directly, as another replica would)
    arrive in id order, however they interleave with this process's own."""
    stub, _, url = service
    store = SqlConfigStore(make_engine(url))
    try:
        call = watch(stub)
        await next_event(call, "snapshot")

        def outside(text: bytes) -> None:
            main = store.get_main(HW)
            store.push_to_main(yaml_revision(text, "dave"), main.etag if main else "", datetime.now(UTC))

        for i in range(3):
            await asyncio.to_thread(outside, f"outside: {i}\n".encode())
            await push(stub, f"inside: {i}\n".encode())
        got = [(await next_event(call, "change")).change for _ in range(6)]
        assert [c.change_id for c in got] == [1, 2, 3, 4, 5, 6]
        assert [c.change.changed_by for c in got] == ["dave", "alice"] * 3
        call.cancel()
    finally:
        store.close()


# -- types ---------------------------------------------------------------------------------------------------
async def test_a_registered_type_is_announced(service) -> None:
    stub, _, _ = service
    call = watch(stub)
    await next_event(call, "snapshot")
    flux = pb.ConfigType(name="flux_bias", abbreviation="FB", required_for_lab_runs=True)
    await stub.RegisterConfigType(pb.RegisterConfigTypeRequest(config_type=flux))
    types = (await next_event(call, "config_types")).config_types.config_types
    assert {t.name: t.required_for_lab_runs for t in types}["flux_bias"] is True
    # Registering the same definition again is not a change; the next event is the next push.
    await stub.RegisterConfigType(pb.RegisterConfigTypeRequest(config_type=flux))
    await push(stub, b"qubit: 1\n")
    assert (await next_event(call)).WhichOneof("event") == "change"
    call.cancel()


# -- bad requests --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("after", "heartbeat_s", "code", "reason"),
    [
        (-1, 0, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CHANGE_ID"),
        (0, 0.01, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HEARTBEAT_INTERVAL"),
        (0, 61, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HEARTBEAT_INTERVAL"),
        (2, 0, grpc.StatusCode.FAILED_PRECONDITION, "CHANGE_ID_AHEAD"),
    ],
)
async def test_bad_requests(service, after: int, heartbeat_s: float, code, reason: str) -> None:
    stub, _, _ = service
    await push(stub, b"qubit: 1\n")  # the history ends at change 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await next_event(watch(stub, after, heartbeat_s))
    assert info.value.code() == code
    assert (error_info(info.value).domain, error_info(info.value).reason) == ("qsched.configs.v1", reason)


# -- who may watch -------------------------------------------------------------------------------------------
async def test_every_principal_may_watch_and_an_anonymous_caller_may_not(service, identity) -> None:
    stub, address, _ = service
    await push(stub, b"qubit: 1\n")
    tokens = {
        "svc-scheduler": identity.service_token,
        "svc-executor": (identity.root / "secrets" / "executor.token").read_text().strip(),
        "a person without roles": identity.token_for("watcher-bob"),
    }
    async with grpc.aio.insecure_channel(address) as channel:
        raw = configs_pb2_grpc.ConfigServiceStub(channel)
        for who, token in tokens.items():
            call = raw.WatchMainRevisions(
                pb.WatchMainRevisionsRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
            snapshot = (await next_event(call, "snapshot")).snapshot
            assert snapshot.change_id == 1, who
            call.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await next_event(raw.WatchMainRevisions(pb.WatchMainRevisionsRequest()))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(info.value).reason == "MISSING_TOKEN"


# -- change ids commit in id order ---------------------------------------------------------------------------
@pytest.mark.postgres
async def test_postgres_a_main_change_waits_for_the_one_before_it_to_commit(configs_postgres_url) -> None:
    """While another transaction writes the history (it holds the ROW EXCLUSIVE lock an insert
    takes, i.e. it may hold an uncommitted id), a change waits before taking an id: so no id
    commits above one still in flight. (Without the history lock, the insert would not wait.)"""
    import psycopg

    store = SqlConfigStore(make_engine(configs_postgres_url))
    done = threading.Event()
    try:
        with psycopg.connect(configs_postgres_url) as holder:
            holder.execute("LOCK TABLE config_main_changes IN ROW EXCLUSIVE MODE")

            def change() -> None:
                store.push_to_main(yaml_revision(b"a: 1\n", "x"), "", datetime.now(UTC))
                done.set()

            thread = threading.Thread(target=change)
            thread.start()

            async def waiting() -> bool:
                row = holder.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted"
                    " AND relation = 'config_main_changes'::regclass"
                ).fetchone()
                return row is not None and row[0] == 1

            await eventually(waiting)
            assert not done.is_set()  # observed waiting on the lock above, not inferred from time
            holder.commit()
            thread.join(10)
        assert done.is_set()
        assert store.history_mark().last_change_id == 1
    finally:
        store.close()
