"""qsched.configs.v1.ConfigService through real gRPC, as `qsched serve configs`
builds it: dedup and ids, content round trips, lists, diffs, history, the etag race,
PushToMain, PinConfigs, and every kind of bad input (code, ErrorInfo reason and
domain, and nothing stored)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc
from qsched.errors import QschedError
from qsched.wire import error_info
from qsched_configs.domain import MAX_CONTENT_BYTES
from tests.configs.conftest import CHANNEL_OPTIONS, configs_service
from tests.support.identity import authed_channel

HW = "hardware_config"
MP = "multiphoton_config"
Stub = configs_pb2_grpc.ConfigServiceStub


async def failure(call) -> QschedError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert error_info(info.value).domain == "qsched.configs.v1"
    return QschedError.from_rpc_error(info.value)


async def create(
    stub: Stub, content: bytes, config_type: str = HW, name: str = "hw.yml", creator: str = "alice"
):
    request = pb.CreateRevisionRequest(
        config_type=config_type, content=content, original_filename=name, creator=creator
    )
    return await stub.CreateRevision(request)


async def etag(stub: Stub, config_type: str = HW) -> str:
    return (await stub.GetMain(pb.GetMainRequest(config_type=config_type))).etag


async def snapshot(stub: Stub) -> tuple:
    """Everything a request could have stored."""
    revisions = await stub.ListRevisions(pb.ListRevisionsRequest(page_size=1000))
    history = await stub.ListMainHistory(pb.ListMainHistoryRequest(page_size=1000))
    types = await stub.ListConfigTypes(pb.ListConfigTypesRequest())
    mains = []
    for t in types.config_types:
        try:
            mains.append((await stub.GetMain(pb.GetMainRequest(config_type=t.name))).etag)
        except grpc.aio.AioRpcError:
            mains.append(None)
    return (
        [(r.revision_id, r.first_job_id) for r in revisions.revisions],
        [c.SerializeToString() for c in history.changes],
        [t.SerializeToString() for t in types.config_types],
        mains,
    )


# -- revisions ---------------------------------------------------------------------------------------------
async def test_identical_content_returns_the_same_revision(stub: Stub) -> None:
    today = datetime.now(UTC).strftime("%Y%m%d")
    first = await create(stub, b"qubit:\n  f_ge: 4000.0\n")
    assert re.fullmatch(rf"CFG-HW-{today}-00001", first.revision.revision_id)
    assert not first.deduplicated
    again = await create(stub, b"qubit:\n  f_ge: 4000.0\n", name="copy.yml", creator="bob")
    assert again.deduplicated and again.revision == first.revision
    other = await create(stub, b"qubit:\n  f_ge: 4000.0\n", config_type=MP, name="mp.yml")
    assert other.revision.revision_id == f"CFG-MP-{today}-00001" and not other.deduplicated
    second = await create(stub, b"qubit:\n  f_ge: 4000.5\n")
    assert second.revision.revision_id == f"CFG-HW-{today}-00002"


async def test_get_revision_returns_the_content_and_its_metadata(stub: Stub) -> None:
    big = b"# " + b"x" * (MAX_CONTENT_BYTES - 3) + b"\n"  # exactly the limit
    assert len(big) == MAX_CONTENT_BYTES
    made = await create(stub, big, name="big.yaml")
    got = (await stub.GetRevision(pb.GetRevisionRequest(revision_id=made.revision.revision_id))).revision
    assert got.content == big
    assert got.sha256 == hashlib.sha256(big).hexdigest() == made.revision.sha256
    assert (got.size_bytes, got.content_type, got.original_filename, got.creator, got.first_job_id) == (
        MAX_CONTENT_BYTES,
        pb.CONTENT_TYPE_YAML,
        "big.yaml",
        "alice",
        "",
    )
    assert abs(got.create_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 60
    # Lists and CreateRevision never carry content.
    listed = await stub.ListRevisions(pb.ListRevisionsRequest())
    assert listed.revisions[0].content == b"" and made.revision.content == b""


async def test_revisions_are_listed_newest_first_page_by_page(stub: Stub) -> None:
    made = [
        (await create(stub, f"n: {i}\n".encode(), HW if i % 3 else MP)).revision.revision_id for i in range(7)
    ]
    seen, token = [], ""
    while True:
        page = await stub.ListRevisions(pb.ListRevisionsRequest(page_size=2, page_token=token))
        assert len(page.revisions) <= 2
        seen += [r.revision_id for r in page.revisions]
        token = page.next_page_token
        if not token:
            break
    assert seen == made[::-1]
    hw = await stub.ListRevisions(pb.ListRevisionsRequest(config_type=HW))
    assert [r.revision_id for r in hw.revisions] == [r for r in made[::-1] if r.startswith("CFG-HW")]
    assert hw.next_page_token == ""


async def test_diff_between_two_revisions(stub: Stub) -> None:
    old = await create(stub, b"readout:\n  gain: 100\n  freq: 7000\n", name="hw_0513.yml")
    new = await create(stub, b"readout:\n  gain: 120\n  freq: 7000\n", name="hw_0514.yml")
    a, b = old.revision.revision_id, new.revision.revision_id
    diff = await stub.DiffRevisions(pb.DiffRevisionsRequest(from_revision_id=a, to_revision_id=b))
    assert not diff.identical
    assert diff.unified_diff == (
        f"--- {a} (hw_0513.yml)\n"
        f"+++ {b} (hw_0514.yml)\n"
        "@@ -1,3 +1,3 @@\n"
        " readout:\n"
        "-  gain: 100\n"
        "+  gain: 120\n"
        "   freq: 7000\n"
    )
    same = await stub.DiffRevisions(pb.DiffRevisionsRequest(from_revision_id=a, to_revision_id=a))
    assert same.identical and same.unified_diff == ""
    blob = await create(stub, b"\xff\xfe\x00", name="blob.bin")
    error = await failure(
        stub.DiffRevisions(
            pb.DiffRevisionsRequest(from_revision_id=a, to_revision_id=blob.revision.revision_id)
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CONTENT_NOT_TEXT")


# -- main pointers -----------------------------------------------------------------------------------------
async def test_history_records_who_when_from_and_to(stub: Stub) -> None:
    one = (await create(stub, b"v: 1\n")).revision.revision_id
    two = (await create(stub, b"v: 2\n")).revision.revision_id
    before = datetime.now(UTC).replace(microsecond=0)
    first = await stub.SetMain(pb.SetMainRequest(config_type=HW, revision_id=one, changed_by="alice"))
    assert first.changed and first.etag
    second = await stub.SetMain(
        pb.SetMainRequest(config_type=HW, revision_id=two, etag=first.etag, changed_by="bob")
    )
    await stub.PushToMain(
        pb.PushToMainRequest(config_type=MP, content=b"m: 1\n", creator="carol", original_filename="mp.yml")
    )
    history = await stub.ListMainHistory(pb.ListMainHistoryRequest(config_type=HW))
    # changed_by is the caller (alice); a different name in the request is kept as a note.
    assert [(c.config_type, c.from_revision_id, c.to_revision_id, c.changed_by) for c in history.changes] == [
        (HW, one, two, "alice (bob)"),
        (HW, "", one, "alice"),
    ]
    for change in history.changes:
        assert before <= change.change_time.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    assert history.changes[0] == second.change
    everything = await stub.ListMainHistory(pb.ListMainHistoryRequest(page_size=2))
    assert [c.changed_by for c in everything.changes] == ["alice (carol)", "alice (bob)"]
    assert everything.next_page_token
    rest = await stub.ListMainHistory(
        pb.ListMainHistoryRequest(page_size=2, page_token=everything.next_page_token)
    )
    assert [c.changed_by for c in rest.changes] == ["alice"] and not rest.next_page_token

    main = await stub.GetMain(pb.GetMainRequest(config_type=HW, include_content=True))
    assert (main.revision.revision_id, main.revision.content, main.etag) == (two, b"v: 2\n", second.etag)
    assert main.last_change == second.change
    assert (await stub.GetMain(pb.GetMainRequest(config_type=HW))).revision.content == b""


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_concurrent_set_main_with_the_same_etag_lets_exactly_one_win(
    backend: str, tmp_path: Path, configs_sqlite_template: Path, request: pytest.FixtureRequest
) -> None:
    extra = (
        {"configs_database_url": request.getfixturevalue("configs_postgres_url")}
        if backend == "postgres"
        else {}
    )
    async with (
        configs_service(tmp_path / "data", configs_sqlite_template, **extra) as address,
        authed_channel(address) as channel,
    ):
        stub = Stub(channel)
        base = await stub.PushToMain(pb.PushToMainRequest(config_type=HW, content=b"v: 0\n", creator="lab"))
        revisions = [(await create(stub, f"v: {i + 1}\n".encode())).revision.revision_id for i in range(8)]

        calls = [
            stub.SetMain(
                pb.SetMainRequest(config_type=HW, revision_id=rev, etag=base.etag, changed_by=f"user{i}")
            )
            for i, rev in enumerate(revisions)
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)

        winners = [r for r in results if isinstance(r, pb.SetMainResponse)]
        losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(winners) == 1 and len(losers) == 7
        for error in losers:
            err = QschedError.from_rpc_error(error)
            assert (err.code, err.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
            assert err.metadata["current_revision_id"] == winners[0].change.to_revision_id
        main = await stub.GetMain(pb.GetMainRequest(config_type=HW))
        assert main.revision.revision_id == winners[0].change.to_revision_id and main.etag == winners[0].etag
        history = await stub.ListMainHistory(pb.ListMainHistoryRequest(config_type=HW))
        assert len(history.changes) == 2  # the push and the one winner


async def test_push_to_main(stub: Stub) -> None:
    first = await stub.PushToMain(
        pb.PushToMainRequest(config_type=HW, content=b"v: 1\n", original_filename="hw.yml", creator="alice")
    )
    assert first.changed and not first.deduplicated and first.change.from_revision_id == ""
    assert first.revision.content_type == pb.CONTENT_TYPE_YAML
    second = await stub.PushToMain(
        pb.PushToMainRequest(config_type=HW, content=b"v: 2\n", creator="bob", etag=first.etag)
    )
    assert second.change.from_revision_id == first.revision.revision_id
    # The caller (alice) pushed; the creator the request names is kept as a note.
    assert second.change.changed_by == second.revision.creator == "alice (bob)"
    assert second.revision.content_type == pb.CONTENT_TYPE_BINARY  # no file name, no content type
    # Re-pushing the main content: nothing to change, same etag.
    same = await stub.PushToMain(
        pb.PushToMainRequest(config_type=HW, content=b"v: 2\n", creator="bob", etag=second.etag)
    )
    assert same.deduplicated and not same.changed and same.etag == second.etag
    assert same.revision.revision_id == second.revision.revision_id
    main = await stub.GetMain(pb.GetMainRequest(config_type=HW))
    assert main.revision.revision_id == second.revision.revision_id


# -- pinning -----------------------------------------------------------------------------------------------
async def test_pin_configs(stub: Stub) -> None:
    error = await failure(stub.PinConfigs(pb.PinConfigsRequest(job_id="JOB-20260114-00001")))
    assert (error.code, error.reason, error.metadata) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NO_MAIN_REVISION",
        {"config_type": HW},
    )
    main = await stub.PushToMain(
        pb.PushToMainRequest(config_type=HW, content=b"hw: 1\n", original_filename="hw.yml", creator="alice")
    )
    older = (await create(stub, b"hw: 0\n")).revision
    mp = (await create(stub, b"mp: 1\n", MP, "mp.yml")).revision

    pinned = (await stub.PinConfigs(pb.PinConfigsRequest(job_id="JOB-20260114-00001"))).pinned
    assert [(p.config_type, p.revision_id, p.sha256, p.size_bytes, p.source) for p in pinned] == [
        (HW, main.revision.revision_id, main.revision.sha256, 6, pb.PIN_SOURCE_MAIN)
    ]

    response = await stub.PinConfigs(
        pb.PinConfigsRequest(
            job_id="JOB-20260114-00002",
            config_types=[HW, MP],
            revision_ids={HW: older.revision_id},
            overrides={MP: b"mp: 2\n"},
            creator="bob",
        )
    )
    explicit, override = response.pinned
    assert (explicit.config_type, explicit.revision_id, explicit.source) == (
        HW,
        older.revision_id,
        pb.PIN_SOURCE_EXPLICIT,
    )
    assert override.config_type == MP and override.source == pb.PIN_SOURCE_OVERRIDE
    assert override.sha256 == hashlib.sha256(b"mp: 2\n").hexdigest()
    stored = (await stub.GetRevision(pb.GetRevisionRequest(revision_id=override.revision_id))).revision
    assert (stored.content, stored.creator, stored.first_job_id) == (b"mp: 2\n", "bob", "JOB-20260114-00002")

    # The same override again is deduplicated; first_job_id stays the first job's.
    again = await stub.PinConfigs(
        pb.PinConfigsRequest(job_id="JOB-20260114-00003", config_types=[MP], overrides={MP: b"mp: 2\n"})
    )
    assert again.pinned[0].revision_id == override.revision_id
    await stub.PinConfigs(pb.PinConfigsRequest(job_id="JOB-20260114-00004"))
    first_jobs = {
        r.revision_id: r.first_job_id for r in (await stub.ListRevisions(pb.ListRevisionsRequest())).revisions
    }
    assert first_jobs == {
        main.revision.revision_id: "JOB-20260114-00001",
        older.revision_id: "JOB-20260114-00002",
        override.revision_id: "JOB-20260114-00002",
        mp.revision_id: "",
    }

    # An explicit revision of another type.
    error = await failure(
        stub.PinConfigs(pb.PinConfigsRequest(job_id="JOB-20260114-00005", revision_ids={HW: mp.revision_id}))
    )
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "REVISION_TYPE_MISMATCH")


# -- bad input ---------------------------------------------------------------------------------------------
OVERSIZE = b"x" * (MAX_CONTENT_BYTES + 1)
MP_ID = "CFG-MP-{today}-00001"
HW_ID = "CFG-HW-{today}-00001"
INVALID, NOT_FOUND, PRECONDITION, ABORTED, EXISTS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.ALREADY_EXISTS,
)


def _create(**kw):
    base = {"config_type": HW, "content": b"a: 1\n", "original_filename": "hw.yml", "creator": "eve"}
    return "CreateRevision", pb.CreateRevisionRequest(**{**base, **kw})


def _push(**kw):
    base = {"config_type": HW, "content": b"a: 9\n", "original_filename": "hw.yml", "creator": "eve"}
    return "PushToMain", pb.PushToMainRequest(**{**base, **kw})


BAD_INPUT = {
    "JSON nested 5,000 deep": (
        _create(content=b'{"a":' * 5000 + b"1" + b"}" * 5000, original_filename="hw.json"),
        INVALID,
        "INVALID_CONTENT",
    ),
    "YAML nested 5,000 deep": (
        _create(content=b"[" * 5000 + b"]" * 5000, original_filename="hw.yml"),
        INVALID,
        "INVALID_CONTENT",
    ),
    "oversized content": (_create(content=OVERSIZE), INVALID, "CONTENT_TOO_LARGE"),
    "oversized push": (_push(content=OVERSIZE, etag="{etag}"), INVALID, "CONTENT_TOO_LARGE"),
    "empty content": (_create(content=b""), INVALID, "EMPTY_CONTENT"),
    "unknown type": (_create(config_type="flux_bias"), NOT_FOUND, "CONFIG_TYPE_NOT_FOUND"),
    "malformed type": (_create(config_type="Hardware-Config"), INVALID, "INVALID_CONFIG_TYPE_NAME"),
    "empty type": (_create(config_type=""), INVALID, "INVALID_CONFIG_TYPE_NAME"),
    "yaml that does not parse": (_create(content=b"a: [1,\n"), INVALID, "INVALID_CONTENT"),
    "json that does not parse": (_create(original_filename="hw.json"), INVALID, "INVALID_CONTENT"),
    "unknown content type": (_create(content_type=42), INVALID, "INVALID_CONTENT_TYPE"),
    "file name too long": (_create(original_filename="a" * 256 + ".yml"), INVALID, "INVALID_FILENAME"),
    "file name with a newline": (_create(original_filename="a\n.yml"), INVALID, "INVALID_FILENAME"),
    "malformed revision id": (
        ("GetRevision", pb.GetRevisionRequest(revision_id="CFG-HW-2026-1")),
        INVALID,
        "INVALID_REVISION_ID",
    ),
    "unknown revision": (
        ("GetRevision", pb.GetRevisionRequest(revision_id="CFG-HW-20200101-00001")),
        NOT_FOUND,
        "REVISION_NOT_FOUND",
    ),
    "set main to a revision of another type": (
        ("SetMain", pb.SetMainRequest(config_type=HW, revision_id=MP_ID, etag="{etag}", changed_by="eve")),
        PRECONDITION,
        "REVISION_TYPE_MISMATCH",
    ),
    "set main with a malformed id": (
        ("SetMain", pb.SetMainRequest(config_type=HW, revision_id="HW-1", etag="{etag}", changed_by="eve")),
        INVALID,
        "INVALID_REVISION_ID",
    ),
    "set main of an unknown type": (
        ("SetMain", pb.SetMainRequest(config_type="flux_bias", revision_id=HW_ID, changed_by="eve")),
        NOT_FOUND,
        "CONFIG_TYPE_NOT_FOUND",
    ),
    "set main without an etag while there is a main": (
        ("SetMain", pb.SetMainRequest(config_type=HW, revision_id="CFG-HW-{today}-00002", changed_by="eve")),
        ABORTED,
        "ETAG_MISMATCH",
    ),
    "set main with a stale etag": (
        ("SetMain", pb.SetMainRequest(revision_id="CFG-HW-{today}-00002", etag="{stale}", changed_by="eve")),
        ABORTED,
        "ETAG_MISMATCH",
    ),
    "push with a stale etag": (_push(etag="{stale}"), ABORTED, "ETAG_MISMATCH"),
    "push without an etag while there is a main": (_push(), ABORTED, "ETAG_MISMATCH"),
    "get main of a type without one": (
        ("GetMain", pb.GetMainRequest(config_type="man1_storage_swap")),
        NOT_FOUND,
        "MAIN_NOT_SET",
    ),
    "pin without a job id": (("PinConfigs", pb.PinConfigsRequest()), INVALID, "INVALID_JOB_ID"),
    "pin a type without a main": (
        ("PinConfigs", pb.PinConfigsRequest(job_id="JOB-20260114-00009", config_types=[HW, MP])),
        PRECONDITION,
        "NO_MAIN_REVISION",
    ),
    "pin an override that does not parse": (
        ("PinConfigs", pb.PinConfigsRequest(job_id="JOB-20260114-00009", overrides={HW: b"a: [\n"})),
        INVALID,
        "INVALID_CONTENT",
    ),
    "pin an oversized override": (
        ("PinConfigs", pb.PinConfigsRequest(job_id="JOB-20260114-00009", overrides={MP: OVERSIZE})),
        INVALID,
        "CONTENT_TOO_LARGE",
    ),
    "pin both an id and an override": (
        (
            "PinConfigs",
            pb.PinConfigsRequest(job_id="JOB-9", revision_ids={HW: HW_ID}, overrides={HW: b"a: 2\n"}),
        ),
        INVALID,
        "CONFLICTING_PIN",
    ),
    "pin an unknown revision": (
        ("PinConfigs", pb.PinConfigsRequest(job_id="JOB-9", revision_ids={HW: "CFG-HW-20200101-00001"})),
        NOT_FOUND,
        "REVISION_NOT_FOUND",
    ),
    "diff an unknown revision": (
        (
            "DiffRevisions",
            pb.DiffRevisionsRequest(from_revision_id=HW_ID, to_revision_id="CFG-HW-20200101-00009"),
        ),
        NOT_FOUND,
        "REVISION_NOT_FOUND",
    ),
    "negative page size": (
        ("ListRevisions", pb.ListRevisionsRequest(page_size=-1)),
        INVALID,
        "INVALID_PAGE_SIZE",
    ),
    "forged page token": (
        ("ListRevisions", pb.ListRevisionsRequest(page_token="eyJmIjoiMCIsImMiOlsxXX0")),
        INVALID,
        "INVALID_PAGE_TOKEN",
    ),
    "list revisions of an unknown type": (
        ("ListRevisions", pb.ListRevisionsRequest(config_type="flux_bias")),
        NOT_FOUND,
        "CONFIG_TYPE_NOT_FOUND",
    ),
    "register a malformed abbreviation": (
        (
            "RegisterConfigType",
            pb.RegisterConfigTypeRequest(config_type=pb.ConfigType(name="flux", abbreviation="f")),
        ),
        INVALID,
        "INVALID_ABBREVIATION",
    ),
    "register a malformed name": (
        (
            "RegisterConfigType",
            pb.RegisterConfigTypeRequest(config_type=pb.ConfigType(name="Flux", abbreviation="FX")),
        ),
        INVALID,
        "INVALID_CONFIG_TYPE_NAME",
    ),
    "register an abbreviation in use": (
        (
            "RegisterConfigType",
            pb.RegisterConfigTypeRequest(config_type=pb.ConfigType(name="flux", abbreviation="HW")),
        ),
        EXISTS,
        "ABBREVIATION_IN_USE",
    ),
    "register a seed type differently": (
        (
            "RegisterConfigType",
            pb.RegisterConfigTypeRequest(config_type=pb.ConfigType(name=HW, abbreviation="HW")),
        ),
        EXISTS,
        "CONFIG_TYPE_EXISTS",
    ),
}


def _fill(message, values: dict[str, str]):
    """Replace {today}/{etag}/{stale} placeholders in the request's string fields."""
    out = type(message)()
    out.CopyFrom(message)
    for field, value in out.ListFields():
        if isinstance(value, str):
            setattr(out, field.name, value.format(**values))
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key in list(value):
                if isinstance(value[key], str):
                    value[key] = value[key].format(**values)
    return out


@pytest.mark.parametrize("case", BAD_INPUT.values(), ids=BAD_INPUT.keys())
async def test_bad_input_is_refused_and_stores_nothing(stub: Stub, case) -> None:
    (method, request), code, reason = case
    # State: HW main is CFG-HW-<today>-00001 after one change; another HW revision and an MP one exist.
    stale = await stub.PushToMain(pb.PushToMainRequest(config_type=HW, content=b"a: 0\n", creator="lab"))
    first = await create(stub, b"a: 1\n")
    await stub.SetMain(
        pb.SetMainRequest(revision_id=first.revision.revision_id, etag=stale.etag, changed_by="lab")
    )
    await create(stub, b"a: 2\n")
    await create(stub, b"m: 1\n", MP, "mp.yml")
    today = datetime.now(UTC).strftime("%Y%m%d")
    values = {"today": today, "etag": await etag(stub), "stale": stale.etag}
    request = _fill(request, values)
    before = await snapshot(stub)

    error = await failure(getattr(stub, method)(request))

    assert (error.code, error.reason) == (code, reason), error
    assert error.message
    assert await snapshot(stub) == before


async def test_without_a_creator_or_user_the_caller_is_recorded(stub: Stub) -> None:
    # Formerly refused (MISSING_USER): the authenticated caller is who created and who changed.
    first = await stub.CreateRevision(
        pb.CreateRevisionRequest(config_type=HW, content=b"a: 1\n", original_filename="hw.yml")
    )
    assert first.revision.creator == "alice"
    pushed = await stub.PushToMain(pb.PushToMainRequest(config_type=MP, content=b"m: 1\n"))
    assert pushed.revision.creator == pushed.change.changed_by == "alice"
    moved = await stub.SetMain(pb.SetMainRequest(revision_id=first.revision.revision_id))
    assert moved.changed and moved.change.changed_by == "alice"
    stored = await stub.GetRevision(pb.GetRevisionRequest(revision_id=first.revision.revision_id))
    assert stored.revision.creator == "alice"
    history = await stub.ListMainHistory(pb.ListMainHistoryRequest(config_type=HW))
    assert [c.changed_by for c in history.changes] == ["alice"]


async def test_health_reports_the_config_service_serving(
    tmp_path: Path, configs_sqlite_template: Path
) -> None:
    async with (
        configs_service(tmp_path / "data", configs_sqlite_template) as address,
        authed_channel(address, options=CHANNEL_OPTIONS) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(
            health_pb2.HealthCheckRequest(service="qsched.configs.v1.ConfigService")
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
