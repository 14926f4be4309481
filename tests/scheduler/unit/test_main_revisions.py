"""MainRevisions fed by a fake stream (the events the gRPC feed translates WatchMainRevisions into):
what it pins from memory, when it sends a run to PinConfigs instead, liveness, resuming, and
what subscribers hear."""

from __future__ import annotations

import asyncio

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched_core.execution import PinnedRevision
from qsched_core.payloads import LabExperiment
from qsched_scheduler.configs_client import stream_event
from qsched_scheduler.main_revisions import (
    CaughtUp,
    MainMoved,
    MainRevision,
    MainRevisions,
    RequiredTypes,
    Snapshot,
    StreamEvent,
)

HW, MP, FB = "hardware_config", "multiphoton_config", "flux_bias"
RABI = LabExperiment("AmplitudeRabiExperiment", "qsched_hardware.experiments")


def main(config_type: str, change_id: int, revision: str = "") -> MainRevision:
    revision = revision or f"CFG-{config_type[:2].upper()}-20260114-{change_id:05d}"
    return MainRevision(config_type, revision, f"sha-{revision}", change_id)


def feed(revisions: MainRevisions, *events: StreamEvent) -> None:
    """A fake stream: the events in order, as the feed applies them."""
    for event in events:
        revisions.apply(event)


def synced(*mains: MainRevision, required: frozenset[str] = frozenset({HW})) -> MainRevisions:
    revisions = MainRevisions()
    position = max((m.change_id for m in mains), default=0)
    feed(revisions, Snapshot(position, required, mains), CaughtUp(position))
    return revisions


def pinned(m: MainRevision) -> PinnedRevision:
    return PinnedRevision(m.config_type, m.revision_id, m.sha256)


# -- pinning from memory -------------------------------------------------------------------------------------
def test_a_main_only_run_pins_every_required_type_from_memory() -> None:
    hw, mp = main(HW, 1), main(MP, 2)
    revisions = synced(hw, mp, required=frozenset({HW, MP}))
    assert revisions.live and revisions.position == 2
    assert revisions.pin(RABI) == (pinned(hw), pinned(mp))  # by type name, as PinConfigs answers
    assert revisions.pin(RABI, [MP]) == (pinned(mp),)  # named types instead of the required ones


def test_named_revisions_and_overrides_go_to_pin_configs() -> None:
    revisions = synced(main(HW, 1))
    named = LabExperiment("E", "m", config_revisions={HW: "CFG-HW-20260101-00001"})
    inline = LabExperiment("E", "m", config_overrides={HW: "qubit: 1\n"})
    assert revisions.pin(named) is None and revisions.pin(inline) is None


def test_a_type_without_main_goes_to_pin_configs() -> None:
    """PinConfigs then fails the run with NO_MAIN_REVISION (or CONFIG_TYPE_NOT_FOUND): the same
    answer as without the cache."""
    revisions = synced(main(MP, 1))  # hardware_config is required and has no main
    assert revisions.pin(RABI) is None
    assert synced(main(HW, 1)).pin(RABI, [HW, "no_such_type"]) is None


def test_no_required_type_pins_nothing_like_pin_configs() -> None:
    assert synced(main(HW, 1), required=frozenset()).pin(RABI) == ()


# -- liveness ------------------------------------------------------------------------------------------------
async def test_nothing_is_pinned_from_memory_before_the_stream_has_caught_up() -> None:
    revisions = MainRevisions()
    assert not revisions.live and revisions.pin(RABI) is None
    assert await revisions.wait_live(0.01) is False  # bounded
    hw = main(HW, 3)
    revisions.apply(Snapshot(3, frozenset({HW}), (hw,)))
    assert revisions.pin(RABI) is None  # a snapshot alone: not yet told it is caught up
    waiter = asyncio.create_task(revisions.wait_live(10))
    revisions.apply(CaughtUp(3))
    assert await waiter is True
    assert revisions.pin(RABI) == (pinned(hw),)


async def test_a_lost_stream_stops_pinning_until_the_resumed_stream_catches_up() -> None:
    v1 = main(HW, 1)
    revisions = synced(v1)
    moves: list[MainMoved] = []
    revisions.subscribe(moves.append)
    revisions.lost()
    assert not revisions.live and revisions.pin(RABI) is None
    assert revisions.position == 1 and revisions.main(HW) == v1  # kept, to resume after change 1
    # The resumed stream: the types, the change committed while it was down, then caught up.
    v2 = main(HW, 2)
    feed(revisions, RequiredTypes(frozenset({HW})), v2)
    assert revisions.pin(RABI) is None  # replaying: not live until caught up
    revisions.apply(CaughtUp(2))
    assert revisions.pin(RABI) == (pinned(v2),)
    assert moves == [MainMoved(revisions.version, frozenset({HW}))]


# -- changes and subscribers ---------------------------------------------------------------------------------
def test_each_change_moves_the_version_and_tells_subscribers() -> None:
    revisions = synced(main(HW, 1), main(MP, 2))
    moves: list[MainMoved] = []
    unsubscribe = revisions.subscribe(moves.append)
    before = revisions.version
    v3 = main(HW, 3)
    revisions.apply(v3)
    assert revisions.pin(RABI) == (pinned(v3),)
    assert revisions.version == before + 1
    assert moves == [MainMoved(before + 1, frozenset({HW}))]
    revisions.apply(main(MP, 4))
    assert moves[-1] == MainMoved(before + 2, frozenset({MP}))
    unsubscribe()
    revisions.apply(main(HW, 5))
    assert len(moves) == 2 and revisions.version == before + 3


def test_a_replayed_change_is_applied_once() -> None:
    v2 = main(HW, 2)
    revisions = synced(main(HW, 1))
    revisions.apply(v2)
    version = revisions.version
    revisions.apply(main(HW, 2, "CFG-HW-20260114-09999"))  # the same change id again
    revisions.apply(main(HW, 1))  # an older one
    assert revisions.main(HW) == v2 and revisions.version == version and revisions.position == 2


def test_a_newly_required_type_sends_runs_to_pin_configs_until_it_has_a_main() -> None:
    hw = main(HW, 1)
    revisions = synced(hw)
    moves: list[MainMoved] = []
    revisions.subscribe(moves.append)
    revisions.apply(RequiredTypes(frozenset({HW, FB})))
    assert revisions.required_types == {HW, FB}
    assert moves == [MainMoved(revisions.version, frozenset({FB}))]
    assert revisions.pin(RABI) is None
    fb = main(FB, 2)
    revisions.apply(fb)
    assert revisions.pin(RABI) == (pinned(fb), pinned(hw))


def test_a_new_snapshot_replaces_everything_and_names_what_changed() -> None:
    revisions = synced(main(HW, 1), main(MP, 2))
    moves: list[MainMoved] = []
    revisions.subscribe(moves.append)
    revisions.forget_position()  # the config service has another history
    assert revisions.position == 0
    hw = main(HW, 7, "CFG-HW-20260115-00001")
    feed(revisions, Snapshot(7, frozenset({HW}), (hw,)), CaughtUp(7))
    assert revisions.main(MP) is None and revisions.position == 7
    assert revisions.pin(RABI) == (pinned(hw),)
    assert moves == [MainMoved(revisions.version, frozenset({HW, MP}))]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    revisions = synced(main(HW, 1))
    seen: list[int] = []

    def broken(_: MainMoved) -> None:
        raise RuntimeError("boom")

    revisions.subscribe(broken)
    revisions.subscribe(lambda moved: seen.append(moved.version))
    revisions.apply(main(HW, 2))
    assert seen == [revisions.version] and revisions.main(HW) == main(HW, 2)


# -- the feed's translation of the proto ---------------------------------------------------------------------
def test_stream_messages_translate_into_events() -> None:
    def revision_pb(change_id: int, config_type: str = HW) -> pb.MainRevision:
        m = main(config_type, change_id)
        return pb.MainRevision(
            change_id=change_id,
            change=pb.MainChange(config_type=config_type, to_revision_id=m.revision_id),
            revision=pb.ConfigRevision(revision_id=m.revision_id, config_type=config_type, sha256=m.sha256),
        )

    types = [pb.ConfigType(name=HW, required_for_lab_runs=True), pb.ConfigType(name=MP)]
    snapshot = pb.MainRevisionsSnapshot(
        change_id=2, config_types=types, mains=[revision_pb(1), revision_pb(2, MP)]
    )
    assert stream_event(pb.WatchMainRevisionsResponse(snapshot=snapshot)) == Snapshot(
        2, frozenset({HW}), (main(HW, 1), main(MP, 2))
    )
    assert stream_event(pb.WatchMainRevisionsResponse(change=revision_pb(3))) == main(HW, 3)
    listed = pb.WatchMainRevisionsResponse(config_types=pb.ConfigTypeList(config_types=types))
    assert stream_event(listed) == RequiredTypes(frozenset({HW}))
    beat = pb.WatchMainRevisionsResponse(heartbeat=pb.WatchHeartbeat(change_id=3))
    assert stream_event(beat) == CaughtUp(3)
