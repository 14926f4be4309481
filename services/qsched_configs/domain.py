"""The config-versioning domain: types, revisions, main pointers and pins.
Plain frozen dataclasses; no gRPC and no SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# Limits (documented in the proto and in docs/configs.md).
MAX_CONTENT_BYTES = 4 * 1024 * 1024
MAX_FILENAME_CHARS = 255
MAX_USER_CHARS = 128
MAX_JOB_ID_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class ContentType(StrEnum):
    YAML = "yaml"
    JSON = "json"
    CSV = "csv"
    BINARY = "binary"


class PinSource(StrEnum):
    MAIN = "main"
    EXPLICIT = "explicit"
    OVERRIDE = "override"


@dataclass(frozen=True)
class ConfigType:
    name: str
    abbreviation: str
    description: str = ""
    required_for_lab_runs: bool = False


# The seed's four types; the first migration inserts them.
SEED_TYPES = (
    ConfigType("hardware_config", "HW", "Hardware config of the station (YAML)", True),
    ConfigType("multiphoton_config", "MP", "Multiphoton pulse config (YAML)", False),
    ConfigType("floquet_storage_swap", "FL", "Floquet storage swap table (CSV)", False),
    ConfigType("man1_storage_swap", "M1", "Manipulate-1 storage swap table (CSV)", False),
)


@dataclass(frozen=True)
class NewRevision:
    """Validated content to store (the store computes nothing but ids)."""

    config_type: str
    content: bytes
    sha256: str
    content_type: ContentType
    original_filename: str
    creator: str
    first_job_id: str = ""  # the job that produced it (a calibration's push), if any


@dataclass(frozen=True)
class Revision:
    order: int  # insertion order: the keyset of "newest first" lists
    revision_id: str
    config_type: str
    sha256: str
    size_bytes: int
    content_type: ContentType
    original_filename: str
    creator: str
    create_time: datetime
    first_job_id: str = ""
    content: bytes | None = None  # only when asked for


@dataclass(frozen=True)
class MainChange:
    order: int  # global, increasing: the keyset of the history and the base of etags
    config_type: str
    from_revision_id: str
    to_revision_id: str
    changed_by: str
    change_time: datetime


@dataclass(frozen=True)
class MainState:
    """A main pointer: the revision, the opaque etag guarding it and the change that set it."""

    revision: Revision
    etag: str
    last_change: MainChange


@dataclass(frozen=True)
class SetMainOutcome:
    state: MainState
    changed: bool  # False: the revision was main already, nothing recorded


@dataclass(frozen=True)
class PushOutcome:
    state: MainState
    changed: bool
    deduplicated: bool


@dataclass(frozen=True)
class PinPick:
    """How to pin one type: an explicit revision id, override content, or (neither) the main."""

    config_type: str
    revision_id: str = ""
    override: NewRevision | None = None


@dataclass(frozen=True)
class Pinned:
    config_type: str
    revision_id: str
    sha256: str
    size_bytes: int
    source: PinSource


def etag_of(change_order: int) -> str:
    """The etag of a pointer whose last change is `change_order`. Opaque to callers; change
    orders are unique across types, so an etag read for one type never matches another."""
    return str(change_order)


# -- watching main -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MainRevision:
    """A main pointer as one change left it: the unit of the watch stream."""

    change: MainChange
    revision: Revision  # the revision main points at after the change, without content

    @property
    def change_id(self) -> int:
        return self.change.order


@dataclass(frozen=True)
class MainSnapshot:
    """Every type and every main as of `change_id` (the newest change: a watcher resumes after it)."""

    change_id: int
    config_types: tuple[ConfigType, ...]
    mains: tuple[MainRevision, ...]


@dataclass(frozen=True)
class TypeList:
    """Every config type (a resumed stream starts with it; sent again when a type is registered)."""

    config_types: tuple[ConfigType, ...]


@dataclass(frozen=True)
class Heartbeat:
    """The watcher has caught up: nothing after `change_id` had committed at the last read."""

    change_id: int


WatchEvent = MainSnapshot | MainRevision | TypeList | Heartbeat


@dataclass(frozen=True)
class HistoryMark:
    """Where the history stands: its newest change id (0: none) and how many types exist (types are
    only ever added, so a new count means a new type)."""

    last_change_id: int
    type_count: int
