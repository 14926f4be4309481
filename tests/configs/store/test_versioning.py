"""ConfigVersioning's rules over a real (SQLite) store with a fixed clock: content
types, which types a pin covers, override content types, pagination."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from qsched_configs.domain import ConfigType, ContentType, PinSource
from qsched_configs.store.sql import SqlConfigStore
from qsched_configs.versioning import ConfigVersioning, Upload
from qsched_core.errors import DomainError
from qsched_core.sql import make_engine
from tests.configs.conftest import T0

HW = "hardware_config"
MP = "multiphoton_config"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def versioning(configs_sqlite_url: str) -> AsyncIterator[ConfigVersioning]:
    v = ConfigVersioning(SqlConfigStore(make_engine(configs_sqlite_url)), b"k" * 32, clock=Clock())
    yield v
    await v.close()


def up(content: bytes, config_type: str = HW, name: str = "hw.yml", content_type=None) -> Upload:
    return Upload(config_type, content, content_type, name, "alice")


async def refused(coro) -> DomainError:
    with pytest.raises(DomainError) as info:
        await coro
    return info.value


async def test_content_types_are_guessed_unless_given(versioning: ConfigVersioning) -> None:
    yaml_rev, _ = await versioning.create_revision(up(b"a: 1\n", name="hw.yaml"))
    json_rev, _ = await versioning.create_revision(up(b'{"a": 2}', name="hw.JSON"))
    csv_rev, _ = await versioning.create_revision(up(b"a,b\n", "man1_storage_swap", "swap.csv"))
    bin_rev, _ = await versioning.create_revision(up(b"\x00\x01", name=""))
    given, _ = await versioning.create_revision(up(b"a: 3\n", name="", content_type=ContentType.YAML))
    assert [r.content_type for r in (yaml_rev, json_rev, csv_rev, bin_rev, given)] == [
        ContentType.YAML,
        ContentType.JSON,
        ContentType.CSV,
        ContentType.BINARY,
        ContentType.YAML,
    ]
    assert yaml_rev.revision_id == "CFG-HW-20260114-00001" and yaml_rev.create_time > T0
    # A .yml name with content that is not YAML: refused, nothing stored.
    error = await refused(versioning.create_revision(up(b"a: [1\n", name="broken.yml")))
    assert (error.code, error.reason) == ("INVALID_ARGUMENT", "INVALID_CONTENT")
    revisions, _ = await versioning.list_revisions("", 0, "")
    assert len(revisions) == 5


async def test_pinning_covers_required_types_plus_the_named_ones(versioning: ConfigVersioning) -> None:
    hw = (await versioning.push_to_main(up(b"hw: 1\n"), "")).state.revision
    mp, _ = await versioning.create_revision(up(b"mp: 1\n", MP, "mp.yml"))

    pinned = await versioning.pin("JOB-20260114-00001", [], {}, {})
    assert [(p.config_type, p.revision_id, p.source) for p in pinned] == [
        (HW, hw.revision_id, PinSource.MAIN)
    ]

    pinned = await versioning.pin("JOB-20260114-00002", [], {MP: mp.revision_id}, {})
    assert [(p.config_type, p.source) for p in pinned] == [(HW, PinSource.MAIN), (MP, PinSource.EXPLICIT)]

    # Naming types replaces the default set.
    pinned = await versioning.pin("JOB-20260114-00003", [MP], {MP: mp.revision_id}, {})
    assert [p.config_type for p in pinned] == [MP]

    await versioning.register_type(ConfigType("flux_bias", "FB", "", required_for_lab_runs=True))
    error = await refused(versioning.pin("JOB-20260114-00004", [], {}, {}))
    assert (error.code, error.reason, error.metadata) == (
        "FAILED_PRECONDITION",
        "NO_MAIN_REVISION",
        {"config_type": "flux_bias"},
    )


async def test_overrides_take_the_content_type_of_main(versioning: ConfigVersioning) -> None:
    await versioning.push_to_main(up(b"hw: 1\n"), "")
    pinned = await versioning.pin("JOB-20260114-00001", [], {}, {HW: b"hw: 2\n"}, "bob")
    override = await versioning.get_revision(pinned[0].revision_id)
    assert (override.content_type, override.creator, override.content, pinned[0].source) == (
        ContentType.YAML,
        "bob",
        b"hw: 2\n",
        PinSource.OVERRIDE,
    )
    # Main is YAML, so a broken YAML override is refused before anything runs.
    error = await refused(versioning.pin("JOB-20260114-00002", [], {}, {HW: b"hw: [\n"}))
    assert error.reason == "INVALID_CONTENT"
    # A type without a main: the override is stored as binary; creator defaults to the job.
    pinned = await versioning.pin("JOB-20260114-00003", [], {}, {MP: b"\x00"})
    override = await versioning.get_revision(pinned[1].revision_id)
    assert override.content_type is ContentType.BINARY and override.creator == "JOB-20260114-00003"


async def test_pin_argument_rules(versioning: ConfigVersioning) -> None:
    await versioning.push_to_main(up(b"hw: 1\n"), "")
    cases = [
        (versioning.pin("", [], {}, {}), "INVALID_JOB_ID"),
        (versioning.pin("J" * 65, [], {}, {}), "INVALID_JOB_ID"),
        (versioning.pin("JOB-1", ["Bad-Name"], {}, {}), "INVALID_CONFIG_TYPE_NAME"),
        (versioning.pin("JOB-1", [], {HW: "CFG-HW-1"}, {}), "INVALID_REVISION_ID"),
        (versioning.pin("JOB-1", [], {HW: "CFG-HW-20260114-00001"}, {HW: b"x"}), "CONFLICTING_PIN"),
        (versioning.pin("JOB-1", [], {}, {"no_such_type": b"x: 1\n"}), "CONFIG_TYPE_NOT_FOUND"),
        (versioning.pin("JOB-1", [], {}, {HW: b""}), "EMPTY_CONTENT"),
    ]
    for coro, reason in cases:
        assert (await refused(coro)).reason == reason
    revisions, _ = await versioning.list_revisions("", 0, "")
    assert len(revisions) == 1 and revisions[0].first_job_id == ""


async def test_pages_follow_tokens_and_tokens_keep_their_filters(versioning: ConfigVersioning) -> None:
    for i in range(7):
        await versioning.create_revision(up(f"n: {i}\n".encode()))
    seen, token = [], ""
    while True:
        page, token = await versioning.list_revisions(HW, 3, token)
        seen += [r.revision_id for r in page]
        if not token:
            break
    assert seen == [f"CFG-HW-20260114-{n:05d}" for n in range(7, 0, -1)]
    _, token = await versioning.list_revisions(HW, 3, "")
    assert (await refused(versioning.list_revisions("", 3, token))).reason == "PAGE_TOKEN_MISMATCH"
    assert (await refused(versioning.list_main_history(HW, 3, token))).reason == "PAGE_TOKEN_MISMATCH"
    assert (await refused(versioning.list_revisions(HW, -1, ""))).reason == "INVALID_PAGE_SIZE"
    types, token = await versioning.list_types(3, "")
    more, last = await versioning.list_types(3, token)
    assert [t.name for t in types + more] == [
        "floquet_storage_swap",
        "hardware_config",
        "man1_storage_swap",
        "multiphoton_config",
    ]
    assert last == ""


async def test_diff_and_main(versioning: ConfigVersioning) -> None:
    assert (await refused(versioning.get_main(HW))).reason == "MAIN_NOT_SET"
    a, _ = await versioning.create_revision(up(b"a: 1\n"))
    b, _ = await versioning.create_revision(up(b"a: 2\n"))
    mp, _ = await versioning.create_revision(up(b"a: 1\n", MP))
    assert await versioning.diff(a.revision_id, mp.revision_id) == ("", True)
    text, identical = await versioning.diff(a.revision_id, b.revision_id)
    assert not identical and "-a: 1\n+a: 2\n" in text
    assert (
        await refused(versioning.diff(a.revision_id, "CFG-HW-20260114-00099"))
    ).reason == "REVISION_NOT_FOUND"
