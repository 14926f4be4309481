"""Domain objects <-> qsched.configs.v1 messages."""

from __future__ import annotations

from google.protobuf import duration_pb2

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.wire import timestamp
from qsched_configs.domain import (
    ConfigType,
    ContentType,
    Heartbeat,
    MainChange,
    MainRevision,
    MainSnapshot,
    Pinned,
    PinSource,
    Revision,
    TypeList,
    WatchEvent,
)
from qsched_configs.errors import InvalidArgument

CONTENT_TYPE_TO_PB = {
    ContentType.YAML: pb.CONTENT_TYPE_YAML,
    ContentType.JSON: pb.CONTENT_TYPE_JSON,
    ContentType.CSV: pb.CONTENT_TYPE_CSV,
    ContentType.BINARY: pb.CONTENT_TYPE_BINARY,
}
CONTENT_TYPE_FROM_PB = {value: key for key, value in CONTENT_TYPE_TO_PB.items()}
PIN_SOURCE_TO_PB = {
    PinSource.MAIN: pb.PIN_SOURCE_MAIN,
    PinSource.EXPLICIT: pb.PIN_SOURCE_EXPLICIT,
    PinSource.OVERRIDE: pb.PIN_SOURCE_OVERRIDE,
}


def content_type_from_pb(value: int) -> ContentType | None:
    """None for CONTENT_TYPE_UNSPECIFIED (guess from the file name)."""
    if value == pb.CONTENT_TYPE_UNSPECIFIED:
        return None
    try:
        return CONTENT_TYPE_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(
            "INVALID_CONTENT_TYPE", f"content_type {value} is not a known ContentType", content_type=value
        ) from None


def config_type_to_pb(config_type: ConfigType) -> pb.ConfigType:
    return pb.ConfigType(
        name=config_type.name,
        abbreviation=config_type.abbreviation,
        description=config_type.description,
        required_for_lab_runs=config_type.required_for_lab_runs,
    )


def config_type_from_pb(message: pb.ConfigType) -> ConfigType:
    return ConfigType(
        name=message.name,
        abbreviation=message.abbreviation,
        description=message.description,
        required_for_lab_runs=message.required_for_lab_runs,
    )


def revision_to_pb(revision: Revision, with_content: bool = False) -> pb.ConfigRevision:
    return pb.ConfigRevision(
        revision_id=revision.revision_id,
        config_type=revision.config_type,
        sha256=revision.sha256,
        size_bytes=revision.size_bytes,
        content_type=CONTENT_TYPE_TO_PB[revision.content_type],
        original_filename=revision.original_filename,
        creator=revision.creator,
        create_time=timestamp(revision.create_time),
        first_job_id=revision.first_job_id,
        content=revision.content if with_content and revision.content is not None else b"",
    )


def change_to_pb(change: MainChange) -> pb.MainChange:
    return pb.MainChange(
        config_type=change.config_type,
        from_revision_id=change.from_revision_id,
        to_revision_id=change.to_revision_id,
        changed_by=change.changed_by,
        change_time=timestamp(change.change_time),
    )


def pinned_to_pb(pinned: Pinned) -> pb.PinnedRevision:
    return pb.PinnedRevision(
        config_type=pinned.config_type,
        revision_id=pinned.revision_id,
        sha256=pinned.sha256,
        size_bytes=pinned.size_bytes,
        source=PIN_SOURCE_TO_PB[pinned.source],
    )


def seconds(value: duration_pb2.Duration) -> float:
    """A Duration in seconds (unset = 0)."""
    return value.seconds + value.nanos / 1e9


def main_revision_to_pb(main: MainRevision) -> pb.MainRevision:
    return pb.MainRevision(
        change_id=main.change_id, change=change_to_pb(main.change), revision=revision_to_pb(main.revision)
    )


def watch_event_to_pb(event: WatchEvent) -> pb.WatchMainRevisionsResponse:
    if isinstance(event, MainRevision):
        return pb.WatchMainRevisionsResponse(change=main_revision_to_pb(event))
    if isinstance(event, Heartbeat):
        return pb.WatchMainRevisionsResponse(heartbeat=pb.WatchHeartbeat(change_id=event.change_id))
    if isinstance(event, TypeList):
        types = [config_type_to_pb(t) for t in event.config_types]
        return pb.WatchMainRevisionsResponse(config_types=pb.ConfigTypeList(config_types=types))
    assert isinstance(event, MainSnapshot)
    snapshot = pb.MainRevisionsSnapshot(
        change_id=event.change_id,
        config_types=[config_type_to_pb(t) for t in event.config_types],
        mains=[main_revision_to_pb(m) for m in event.mains],
    )
    return pb.WatchMainRevisionsResponse(snapshot=snapshot)
