"""The storage interface of the config service.

Inputs are validated by the caller (qsched_configs.versioning); the store owns
what only a transaction can decide: id allocation, dedup, the etag compare-and-set,
existence of types and revisions. Every mutating call is one transaction, durable
when it returns; on any error nothing of it is stored. Failures are raised as
qsched_configs.errors domain errors. Implementations are synchronous; the service
runs them off the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from qsched_configs.domain import (
    ConfigType,
    HistoryMark,
    MainChange,
    MainRevision,
    MainState,
    NewRevision,
    Pinned,
    PinPick,
    PushOutcome,
    Revision,
    SetMainOutcome,
)


class ConfigStore(Protocol):
    # -- types -------------------------------------------------------------------------------------------
    def get_type(self, name: str) -> ConfigType | None: ...

    def list_types(self, after: str | None, limit: int) -> list[ConfigType]:
        """Types by name, strictly after `after`."""

    def register_type(self, config_type: ConfigType, now: datetime) -> tuple[ConfigType, bool]:
        """Add a type; (stored type, created). An identical existing definition is returned with
        created=False; a clash raises AlreadyExists (CONFIG_TYPE_EXISTS / ABBREVIATION_IN_USE)."""

    # -- revisions -----------------------------------------------------------------------------------------
    def create_revision(self, new: NewRevision, now: datetime) -> tuple[Revision, bool]:
        """Store content as a new revision; (revision, created). Content identical to an existing
        revision of the same type returns that revision with created=False."""

    def get_revision(self, revision_id: str, with_content: bool = True) -> Revision | None: ...

    def list_revisions(self, config_type: str, after: int | None, limit: int) -> list[Revision]:
        """Newest first (by order), of one type or ("") every type, strictly before order `after`."""

    # -- main pointers -------------------------------------------------------------------------------------
    def get_main(self, config_type: str, with_content: bool = False) -> MainState | None:
        """The main pointer of a (registered) type, None when it has none."""

    def set_main(
        self, config_type: str, revision_id: str, etag: str, changed_by: str, now: datetime
    ) -> SetMainOutcome:
        """Compare-and-set the pointer: Aborted ETAG_MISMATCH unless `etag` is its current etag
        ("" = no main yet). Setting the current main again records nothing (changed=False)."""

    def push_to_main(self, new: NewRevision, etag: str, now: datetime) -> PushOutcome:
        """create_revision then set_main, in one transaction."""

    def list_main_changes(self, config_type: str, after: int | None, limit: int) -> list[MainChange]:
        """Newest first, of one type or ("") every type, strictly before order `after`."""

    # -- watching main ------------------------------------------------------------------------------------
    def main_revisions(self) -> list[MainRevision]:
        """Every main pointer with the change that set it and its revision, by type name, read in one
        statement (so the newest change id among them is the newest change of the history)."""

    def main_changes_after(self, after: int, limit: int) -> list[MainRevision]:
        """Changes with an id above `after`, oldest first, each with the revision it made main. Ids
        commit in increasing order (see SqlConfigStore), so a reader never skips a later commit."""

    def history_mark(self) -> HistoryMark:
        """The newest change id and the number of types, in one cheap statement (what watchers poll)."""

    # -- pinning -------------------------------------------------------------------------------------------
    def pin(self, job_id: str, picks: Sequence[PinPick], now: datetime) -> list[Pinned]:
        """Resolve every pick (explicit id, override content, else main) and record job_id as the
        first job of each pinned revision that has none. All or nothing."""

    def close(self) -> None: ...
