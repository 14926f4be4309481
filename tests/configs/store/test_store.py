"""The SQL store on SQLite and PostgreSQL: ids, dedup, the etag compare-and-set
(also between independent connections racing), pinning, types, and that a failed
call stores nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qsched_configs.content import sha256_hex
from qsched_configs.domain import ConfigType, ContentType, NewRevision, PinPick, PinSource
from qsched_configs.errors import AlreadyExists
from qsched_configs.store.models import ContentRow, MainChangeRow, RevisionRow
from qsched_configs.store.sql import SqlConfigStore
from qsched_core.errors import DomainError
from qsched_core.sql import make_engine
from tests.configs.conftest import T0

HW = "hardware_config"
MP = "multiphoton_config"
T = TypeVar("T")


def new(content: bytes, config_type: str = HW, creator: str = "alice", name: str = "hw.yml") -> NewRevision:
    return NewRevision(config_type, content, sha256_hex(content), ContentType.YAML, name, creator)


def counts(url: str) -> dict[str, int]:
    """Rows of the tables a failed call must leave alone, read through a connection of its own."""
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return {
                table.__tablename__: session.scalar(select(func.count()).select_from(table))
                for table in (RevisionRow, ContentRow, MainChangeRow)
            }
    finally:
        engine.dispose()


def refused(fn: Callable[[], object]) -> DomainError:
    with pytest.raises(DomainError) as info:
        fn()
    return info.value


# -- revisions ---------------------------------------------------------------------------------------------
def test_identical_content_of_a_type_is_stored_once(store: SqlConfigStore, sql_url: str) -> None:
    first, created = store.create_revision(new(b"a: 1\n"), T0)
    assert created and first.revision_id == "CFG-HW-20260114-00001"
    again, created = store.create_revision(
        new(b"a: 1\n", creator="bob", name="other.yml"), T0 + timedelta(days=1)
    )
    assert not created and again == first  # the first revision, metadata and all
    # The same bytes as another type: a revision of that type, sharing the content row.
    other, created = store.create_revision(new(b"a: 1\n", MP), T0)
    assert created and other.revision_id == "CFG-MP-20260114-00001"
    assert counts(sql_url) == {"config_revisions": 2, "config_contents": 1, "config_main_changes": 0}
    stored = store.get_revision(first.revision_id)
    assert stored is not None and stored.content == b"a: 1\n" and stored.sha256 == sha256_hex(b"a: 1\n")
    assert store.get_revision(first.revision_id, with_content=False).content is None
    assert store.get_revision("CFG-HW-20260114-00099") is None


def test_revision_counters_are_per_day_and_per_type(store: SqlConfigStore) -> None:
    made = [
        store.create_revision(new(b"a: 1\n"), T0)[0].revision_id,
        store.create_revision(new(b"a: 2\n"), T0)[0].revision_id,
        store.create_revision(new(b"a: 1\n", MP), T0)[0].revision_id,
        store.create_revision(new(b"a: 3\n"), T0 + timedelta(days=1))[0].revision_id,
        store.create_revision(new(b"a: 4\n"), T0.replace(hour=23, minute=59))[0].revision_id,
    ]
    assert made == [
        "CFG-HW-20260114-00001",
        "CFG-HW-20260114-00002",
        "CFG-MP-20260114-00001",
        "CFG-HW-20260115-00001",
        "CFG-HW-20260114-00003",
    ]


def test_lists_are_newest_first_with_a_keyset_cursor(store: SqlConfigStore) -> None:
    ids = [store.create_revision(new(f"n: {i}\n".encode(), HW if i % 2 else MP), T0)[0] for i in range(5)]
    everything = store.list_revisions("", None, 10)
    assert [r.revision_id for r in everything] == [r.revision_id for r in reversed(ids)]
    assert all(r.content is None for r in everything)
    hw = store.list_revisions(HW, None, 10)
    assert [r.revision_id for r in hw] == ["CFG-HW-20260114-00002", "CFG-HW-20260114-00001"]
    page = store.list_revisions("", None, 2)
    rest = store.list_revisions("", page[-1].order, 10)
    assert [r.revision_id for r in page + rest] == [r.revision_id for r in everything]
    assert refused(lambda: store.list_revisions("no_such_type", None, 10)).reason == "CONFIG_TYPE_NOT_FOUND"


# -- main pointers -----------------------------------------------------------------------------------------
def test_set_main_is_a_compare_and_set_on_the_etag(store: SqlConfigStore) -> None:
    one = store.create_revision(new(b"a: 1\n"), T0)[0]
    two = store.create_revision(new(b"a: 2\n"), T0)[0]
    assert store.get_main(HW) is None

    first = store.set_main(HW, one.revision_id, "", "alice", T0)
    assert first.changed and first.state.revision.revision_id == one.revision_id
    assert first.state.last_change.from_revision_id == "" and first.state.last_change.changed_by == "alice"

    # An empty etag once there is a main, or a made-up one: refused, nothing changes.
    for etag in ["", "999", "not-an-etag"]:
        error = refused(lambda etag=etag: store.set_main(HW, two.revision_id, etag, "bob", T0))
        assert (error.code, error.reason) == ("ABORTED", "ETAG_MISMATCH")
        assert error.metadata["current_revision_id"] == one.revision_id

    second = store.set_main(HW, two.revision_id, first.state.etag, "bob", T0 + timedelta(minutes=1))
    assert second.changed and second.state.etag != first.state.etag
    assert second.state.last_change.from_revision_id == one.revision_id
    # The etag bob used is stale now.
    assert refused(lambda: store.set_main(HW, one.revision_id, first.state.etag, "carol", T0)).reason == (
        "ETAG_MISMATCH"
    )
    # Setting the current main again is a no-op: no history entry, same etag.
    same = store.set_main(HW, two.revision_id, second.state.etag, "carol", T0)
    assert not same.changed and same.state.etag == second.state.etag
    assert same.state.last_change == second.state.last_change

    main = store.get_main(HW, with_content=True)
    assert main is not None and main.revision.content == b"a: 2\n" and main.etag == second.state.etag
    history = store.list_main_changes(HW, None, 10)
    assert [(c.from_revision_id, c.to_revision_id, c.changed_by) for c in history] == [
        (one.revision_id, two.revision_id, "bob"),
        ("", one.revision_id, "alice"),
    ]
    assert history[0].change_time == T0 + timedelta(minutes=1)


def test_set_main_checks_the_type_and_the_revision(store: SqlConfigStore) -> None:
    mp = store.create_revision(new(b"a: 1\n", MP), T0)[0]
    error = refused(lambda: store.set_main(HW, mp.revision_id, "", "alice", T0))
    assert (error.code, error.reason) == ("FAILED_PRECONDITION", "REVISION_TYPE_MISMATCH")
    assert (
        refused(lambda: store.set_main(HW, "CFG-HW-20260114-00042", "", "a", T0)).reason
        == "REVISION_NOT_FOUND"
    )
    assert (
        refused(lambda: store.set_main("nope", mp.revision_id, "", "a", T0)).reason == "CONFIG_TYPE_NOT_FOUND"
    )
    # No type given: the revision's own.
    assert store.set_main("", mp.revision_id, "", "alice", T0).state.revision.config_type == MP
    # Etags of one type never match another's pointer.
    mp_etag = store.get_main(MP).etag
    hw = store.create_revision(new(b"b: 1\n"), T0)[0]
    assert refused(lambda: store.set_main(HW, hw.revision_id, mp_etag, "a", T0)).reason == "ETAG_MISMATCH"


def test_push_to_main_is_all_or_nothing(store: SqlConfigStore, sql_url: str) -> None:
    pushed = store.push_to_main(new(b"a: 1\n"), "", T0)
    assert pushed.changed and not pushed.deduplicated
    assert pushed.state.last_change.changed_by == "alice"
    before = counts(sql_url)
    error = refused(lambda: store.push_to_main(new(b"a: 2\n", creator="bob"), "", T0))
    assert error.reason == "ETAG_MISMATCH"
    assert counts(sql_url) == before  # neither the revision nor its content was kept

    again = store.push_to_main(new(b"a: 1\n"), pushed.state.etag, T0)
    assert again.deduplicated and not again.changed and again.state.etag == pushed.state.etag
    newer = store.push_to_main(new(b"a: 2\n"), pushed.state.etag, T0)
    assert newer.changed and newer.state.revision.revision_id == "CFG-HW-20260114-00002"
    # Pushing older content again points main back at its existing revision.
    back = store.push_to_main(new(b"a: 1\n"), newer.state.etag, T0)
    assert back.deduplicated and back.changed and back.state.revision.revision_id == "CFG-HW-20260114-00001"


# -- races between independent connections (other processes, other replicas) -------------------------------
def race(url: str, n: int, fn: Callable[[SqlConfigStore, int], T]) -> list[T | DomainError]:
    """Run fn in n threads, each with its own engine, released at once."""
    stores = [SqlConfigStore(make_engine(url)) for _ in range(n)]
    barrier = threading.Barrier(n)
    results: list[T | DomainError] = [None] * n  # type: ignore[list-item]

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(stores[i], i)
        except DomainError as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for s in stores:
        s.close()
    return results


def test_concurrent_set_main_with_one_etag_lets_exactly_one_win(store: SqlConfigStore, sql_url: str) -> None:
    base = store.set_main(HW, store.create_revision(new(b"base: 0\n"), T0)[0].revision_id, "", "lab", T0)
    candidates = [store.create_revision(new(f"v: {i}\n".encode()), T0)[0].revision_id for i in range(6)]

    results = race(sql_url, 6, lambda s, i: s.set_main(HW, candidates[i], base.state.etag, f"user{i}", T0))
    winners = [r for r in results if not isinstance(r, DomainError)]
    losers = [r for r in results if isinstance(r, DomainError)]
    assert len(winners) == 1 and all(e.reason == "ETAG_MISMATCH" for e in losers)
    assert store.get_main(HW).revision.revision_id == winners[0].state.revision.revision_id
    assert len(store.list_main_changes(HW, None, 10)) == 2


def test_concurrent_first_set_main_lets_exactly_one_win(store: SqlConfigStore, sql_url: str) -> None:
    candidates = [store.create_revision(new(f"v: {i}\n".encode()), T0)[0].revision_id for i in range(6)]
    results = race(sql_url, 6, lambda s, i: s.set_main(HW, candidates[i], "", f"user{i}", T0))
    assert sum(not isinstance(r, DomainError) for r in results) == 1
    assert {r.reason for r in results if isinstance(r, DomainError)} == {"ETAG_MISMATCH"}


def test_concurrent_identical_uploads_make_one_revision(store: SqlConfigStore, sql_url: str) -> None:
    results = race(sql_url, 6, lambda s, i: s.create_revision(new(b"same: 1\n", creator=f"u{i}"), T0))
    assert len({r[0].revision_id for r in results}) == 1  # type: ignore[index]
    assert sum(r[1] for r in results) == 1  # type: ignore[index]
    # Different content at once: distinct, gap-free ids.
    results = race(sql_url, 6, lambda s, i: s.create_revision(new(f"d: {i}\n".encode()), T0))
    assert sorted(r[0].revision_id for r in results) == [  # type: ignore[index]
        f"CFG-HW-20260114-{n:05d}" for n in range(2, 8)
    ]


# -- pinning -----------------------------------------------------------------------------------------------
def test_pin_main_explicit_and_override(store: SqlConfigStore) -> None:
    main = store.push_to_main(new(b"hw: 1\n"), "", T0).state.revision
    older = store.create_revision(new(b"hw: 0\n"), T0)[0]
    mp = store.create_revision(new(b"mp: 1\n", MP), T0)[0]

    pinned = store.pin("JOB-20260114-00001", [PinPick(HW)], T0)
    assert [(p.config_type, p.revision_id, p.sha256, p.size_bytes, p.source) for p in pinned] == [
        (HW, main.revision_id, main.sha256, main.size_bytes, PinSource.MAIN)
    ]
    assert store.get_revision(main.revision_id).first_job_id == "JOB-20260114-00001"

    pinned = store.pin(
        "JOB-20260114-00002",
        [PinPick(HW, revision_id=older.revision_id), PinPick(MP, override=new(b"mp: 2\n", MP, "bob"))],
        T0,
    )
    assert [p.source for p in pinned] == [PinSource.EXPLICIT, PinSource.OVERRIDE]
    override = store.get_revision(pinned[1].revision_id)
    assert override.revision_id == "CFG-MP-20260114-00002" and override.creator == "bob"
    assert override.first_job_id == "JOB-20260114-00002"
    # first_job_id is the first job only.
    store.pin("JOB-20260114-00003", [PinPick(HW)], T0)
    assert store.get_revision(main.revision_id).first_job_id == "JOB-20260114-00001"
    # An override identical to an existing revision pins that revision.
    pinned = store.pin("JOB-20260114-00004", [PinPick(MP, override=new(b"mp: 1\n", MP))], T0)
    assert pinned[0].revision_id == mp.revision_id
    assert store.get_revision(mp.revision_id).first_job_id == "JOB-20260114-00004"


def test_pin_is_all_or_nothing(store: SqlConfigStore, sql_url: str) -> None:
    store.push_to_main(new(b"hw: 1\n"), "", T0)
    before = counts(sql_url)
    picks = [PinPick(HW), PinPick(MP, override=new(b"mp: 9\n", MP)), PinPick("man1_storage_swap")]
    error = refused(lambda: store.pin("JOB-20260114-00001", picks, T0))
    assert (error.code, error.reason) == ("FAILED_PRECONDITION", "NO_MAIN_REVISION")
    assert error.metadata == {"config_type": "man1_storage_swap"}
    assert counts(sql_url) == before  # the override was not kept
    assert store.get_main(HW).revision.first_job_id == ""  # nor the first job

    mp = store.create_revision(new(b"mp: 1\n", MP), T0)[0]
    error = refused(lambda: store.pin("JOB-1", [PinPick(HW, revision_id=mp.revision_id)], T0))
    assert (error.code, error.reason) == ("FAILED_PRECONDITION", "REVISION_TYPE_MISMATCH")
    error = refused(lambda: store.pin("JOB-1", [PinPick(HW, revision_id="CFG-HW-20260114-00077")], T0))
    assert (error.code, error.reason) == ("NOT_FOUND", "REVISION_NOT_FOUND")
    assert refused(lambda: store.pin("JOB-1", [PinPick("nope")], T0)).reason == "CONFIG_TYPE_NOT_FOUND"
    assert store.get_revision(mp.revision_id).first_job_id == ""


# -- types -------------------------------------------------------------------------------------------------
def test_seed_types_and_registering_more(store: SqlConfigStore) -> None:
    assert [(t.name, t.abbreviation, t.required_for_lab_runs) for t in store.list_types(None, 10)] == [
        ("floquet_storage_swap", "FL", False),
        ("hardware_config", "HW", True),
        ("man1_storage_swap", "M1", False),
        ("multiphoton_config", "MP", False),
    ]
    flux = ConfigType("flux_bias", "FB", "Flux bias table", True)
    assert store.register_type(flux, T0) == (flux, True)
    assert store.register_type(flux, T0) == (flux, False)  # identical again: a no-op
    assert store.get_type("flux_bias") == flux
    error = refused(lambda: store.register_type(ConfigType("flux_bias", "FB", "other"), T0))
    assert (error.code, error.reason) == ("ALREADY_EXISTS", "CONFIG_TYPE_EXISTS")
    with pytest.raises(AlreadyExists) as info:
        store.register_type(ConfigType("flux_two", "HW"), T0)
    assert info.value.reason == "ABBREVIATION_IN_USE" and info.value.metadata["config_type"] == HW
    assert [t.name for t in store.list_types("hardware_config", 2)] == [
        "man1_storage_swap",
        "multiphoton_config",
    ]
    assert store.create_revision(new(b"fb: 1\n", "flux_bias"), T0)[0].revision_id == "CFG-FB-20260114-00001"


def test_a_reopened_store_sees_everything_and_ids_continue(sql_url: str) -> None:
    first = SqlConfigStore(make_engine(sql_url))
    pushed = first.push_to_main(new(b"a: 1\n"), "", T0)
    first.close()
    second = SqlConfigStore(make_engine(sql_url))
    try:
        assert second.get_main(HW).etag == pushed.state.etag
        assert second.create_revision(new(b"a: 2\n"), T0)[0].revision_id == "CFG-HW-20260114-00002"
    finally:
        second.close()
