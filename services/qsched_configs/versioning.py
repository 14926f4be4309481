"""The config service's logic: validation, content types, pagination and pinning
rules, over a ConfigStore. Knows nothing of SQL (the store) or gRPC (the servicer).

Validation happens before the store is called, so a bad request stores nothing;
what only a transaction can decide (dedup, ids, etags, existence) is the store's."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from qsched_configs import content as contents
from qsched_configs import ids
from qsched_configs.domain import (
    DEFAULT_PAGE_SIZE,
    MAX_DESCRIPTION_CHARS,
    MAX_FILENAME_CHARS,
    MAX_JOB_ID_CHARS,
    MAX_PAGE_SIZE,
    MAX_USER_CHARS,
    ConfigType,
    ContentType,
    MainChange,
    MainState,
    NewRevision,
    Pinned,
    PinPick,
    PushOutcome,
    Revision,
    SetMainOutcome,
    WatchEvent,
)
from qsched_configs.errors import InvalidArgument, NotFound, revision_not_found, type_not_found
from qsched_configs.store.base import ConfigStore
from qsched_configs.watch import POLL_INTERVAL_S, MainWatch
from qsched_core.clock import utcnow
from qsched_core.pagination import PageTokens

T = TypeVar("T")


@dataclass(frozen=True)
class Upload:
    """Content as a caller sends it (CreateRevision, PushToMain)."""

    config_type: str
    content: bytes
    content_type: ContentType | None  # None: guess from the file name
    original_filename: str
    creator: str
    job_id: str = ""  # the job whose result this is (PushToMain): the revision's first_job_id


# -- validation -----------------------------------------------------------------------------------------
def check_type_name(name: str, field: str = "config_type") -> None:
    if not ids.is_type_name(name):
        raise InvalidArgument(
            "INVALID_CONFIG_TYPE_NAME",
            f"{field} {name!r} is not a config type name (lower_snake, at most "
            f"{ids.MAX_TYPE_NAME_CHARS} characters, e.g. hardware_config)",
            config_type=name,
        )


def check_revision_id(revision_id: str, field: str = "revision_id") -> None:
    if not ids.is_revision_id(revision_id):
        raise InvalidArgument(
            "INVALID_REVISION_ID",
            f"{field} {revision_id!r} is not a revision id (CFG-<ABBR>-YYYYMMDD-NNNNN)",
            revision_id=revision_id,
        )


def check_user(user: str, field: str) -> None:
    if not user:
        raise InvalidArgument("MISSING_USER", f"{field} is required: it is kept in the history", field=field)
    if len(user) > MAX_USER_CHARS or not user.isprintable():
        raise InvalidArgument(
            "INVALID_USER",
            f"{field} must be printable and at most {MAX_USER_CHARS} characters",
            field=field,
        )


def check_filename(name: str) -> None:
    if len(name) > MAX_FILENAME_CHARS or not name.isprintable():
        raise InvalidArgument(
            "INVALID_FILENAME",
            f"original_filename must be printable and at most {MAX_FILENAME_CHARS} characters",
            length=len(name),
        )


def check_config_type(config_type: ConfigType) -> None:
    check_type_name(config_type.name, "name")
    if not ids.is_abbreviation(config_type.abbreviation):
        raise InvalidArgument(
            "INVALID_ABBREVIATION",
            f"abbreviation {config_type.abbreviation!r} must be two upper-case letters or digits, e.g. HW",
            abbreviation=config_type.abbreviation,
        )
    if len(config_type.description) > MAX_DESCRIPTION_CHARS:
        raise InvalidArgument(
            "INVALID_DESCRIPTION",
            f"description is longer than {MAX_DESCRIPTION_CHARS} characters",
            length=len(config_type.description),
        )


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative", page_size=requested)
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def new_revision(upload: Upload) -> NewRevision:
    """Validate an upload (name, size, encoding) into content ready to store."""
    check_type_name(upload.config_type)
    check_filename(upload.original_filename)
    check_user(upload.creator, "creator")
    content_type = upload.content_type or contents.guess_content_type(upload.original_filename)
    contents.check_content(upload.content, content_type)
    if len(upload.job_id) > MAX_JOB_ID_CHARS or not upload.job_id.isprintable():
        raise InvalidArgument(
            "INVALID_JOB_ID", f"job_id must be printable and at most {MAX_JOB_ID_CHARS} characters"
        )
    return NewRevision(
        config_type=upload.config_type,
        content=upload.content,
        sha256=contents.sha256_hex(upload.content),
        content_type=content_type,
        original_filename=upload.original_filename,
        creator=upload.creator,
        first_job_id=upload.job_id,
    )


# -- the service --------------------------------------------------------------------------------------------
class ConfigVersioning:
    def __init__(
        self,
        store: ConfigStore,
        page_key: bytes,
        clock: Callable[[], datetime] = utcnow,
        poll_interval_s: float = POLL_INTERVAL_S,
    ):
        self._store = store
        self._clock = clock
        self._tokens = PageTokens(page_key)
        # One thread runs every store call: SQLite wants a single writer, and it keeps blocking
        # I/O off the event loop. (Etag checks do not rely on it: they are the database's.)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qsched-configs-store")
        self._watch = MainWatch(store, self._call, self._all_types, poll_interval_s)

    async def close(self) -> None:
        await self._watch.close()
        self._db.shutdown(wait=True)
        self._store.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, functools.partial(fn, *args))

    async def _check_known_type(self, name: str) -> ConfigType:
        check_type_name(name)
        found = await self._call(self._store.get_type, name)
        if found is None:
            raise type_not_found(name)
        return found

    # -- types -------------------------------------------------------------------------------------------
    async def list_types(self, page_size: int, page_token: str) -> tuple[list[ConfigType], str]:
        size = page_size_of(page_size)
        filters = ["types"]
        after = self._tokens.decode(page_token, filters)[0] if page_token else None
        found = await self._call(self._store.list_types, after, size + 1)
        token = self._tokens.encode(filters, (found[size - 1].name,)) if len(found) > size else ""
        return found[:size], token

    async def register_type(self, config_type: ConfigType) -> tuple[ConfigType, bool]:
        check_config_type(config_type)
        stored, created = await self._call(self._store.register_type, config_type, self._clock())
        if created:
            self._watch.poke()
        return stored, created

    # -- revisions -----------------------------------------------------------------------------------------
    async def create_revision(self, upload: Upload) -> tuple[Revision, bool]:
        new = new_revision(upload)
        return await self._call(self._store.create_revision, new, self._clock())

    async def get_revision(self, revision_id: str) -> Revision:
        check_revision_id(revision_id)
        found = await self._call(self._store.get_revision, revision_id, True)
        if found is None:
            raise revision_not_found(revision_id)
        return found

    async def list_revisions(
        self, config_type: str, page_size: int, page_token: str
    ) -> tuple[list[Revision], str]:
        if config_type:
            check_type_name(config_type)
        size = page_size_of(page_size)
        filters = ["revisions", config_type]
        after = self._tokens.decode(page_token, filters)[0] if page_token else None
        if after is not None and not isinstance(after, int):
            raise InvalidArgument("INVALID_PAGE_TOKEN", "page_token is not a token this server issued")
        found = await self._call(self._store.list_revisions, config_type, after, size + 1)
        token = self._tokens.encode(filters, (found[size - 1].order,)) if len(found) > size else ""
        return found[:size], token

    async def diff(self, from_revision_id: str, to_revision_id: str) -> tuple[str, bool]:
        check_revision_id(from_revision_id, "from_revision_id")
        check_revision_id(to_revision_id, "to_revision_id")
        old = await self.get_revision(from_revision_id)
        new = await self.get_revision(to_revision_id)
        assert old.content is not None and new.content is not None
        if old.sha256 == new.sha256:
            return "", True
        text = await asyncio.to_thread(
            contents.unified_diff, old.content, new.content, _label(old), _label(new)
        )
        return text, False

    # -- main pointers -------------------------------------------------------------------------------------
    async def get_main(self, config_type: str, include_content: bool = False) -> MainState:
        check_type_name(config_type)
        state = await self._call(self._store.get_main, config_type, include_content)
        if state is None:
            raise NotFound(
                "MAIN_NOT_SET",
                f"config type {config_type} has no main revision yet",
                config_type=config_type,
            )
        return state

    async def set_main(
        self, config_type: str, revision_id: str, etag: str, changed_by: str
    ) -> SetMainOutcome:
        if config_type:
            check_type_name(config_type)
        check_revision_id(revision_id)
        check_user(changed_by, "changed_by")
        outcome = await self._call(
            self._store.set_main, config_type, revision_id, etag, changed_by, self._clock()
        )
        if outcome.changed:
            self._watch.poke()
        return outcome

    async def push_to_main(self, upload: Upload, etag: str) -> PushOutcome:
        new = new_revision(upload)
        outcome = await self._call(self._store.push_to_main, new, etag, self._clock())
        if outcome.changed:
            self._watch.poke()
        return outcome

    async def list_main_history(
        self, config_type: str, page_size: int, page_token: str
    ) -> tuple[list[MainChange], str]:
        if config_type:
            check_type_name(config_type)
        size = page_size_of(page_size)
        filters = ["history", config_type]
        after = self._tokens.decode(page_token, filters)[0] if page_token else None
        if after is not None and not isinstance(after, int):
            raise InvalidArgument("INVALID_PAGE_TOKEN", "page_token is not a token this server issued")
        found = await self._call(self._store.list_main_changes, config_type, after, size + 1)
        token = self._tokens.encode(filters, (found[size - 1].order,)) if len(found) > size else ""
        return found[:size], token

    def watch_main(self, after_change_id: int = 0, heartbeat_s: float = 0) -> AsyncIterator[WatchEvent]:
        """A snapshot of every main (or, resuming after a change id, the changes after it), then every
        change as it commits; see qsched_configs.watch. heartbeat_s 0 = the default."""
        return self._watch.watch(after_change_id, heartbeat_s)

    # -- pinning -------------------------------------------------------------------------------------------
    async def pin(
        self,
        job_id: str,
        config_types: Sequence[str],
        revision_ids: Mapping[str, str],
        overrides: Mapping[str, bytes],
        creator: str = "",
    ) -> list[Pinned]:
        """The revisions a job runs with; see PinConfigsRequest in the proto for the rules."""
        if not job_id or len(job_id) > MAX_JOB_ID_CHARS or not job_id.isprintable():
            raise InvalidArgument(
                "INVALID_JOB_ID",
                f"job_id is required, printable and at most {MAX_JOB_ID_CHARS} characters",
                job_id=job_id[:MAX_JOB_ID_CHARS],
            )
        creator = creator or job_id
        check_user(creator, "creator")
        for name in [*config_types, *revision_ids, *overrides]:
            check_type_name(name)
        for name, revision_id in revision_ids.items():
            check_revision_id(revision_id, f"revision_ids[{name}]")
        both = sorted(set(revision_ids) & set(overrides))
        if both:
            raise InvalidArgument(
                "CONFLICTING_PIN",
                f"{', '.join(both)}: name a revision or send override content, not both",
                config_types=",".join(both),
            )
        names = set(config_types) or await self._required_types()
        names |= set(revision_ids) | set(overrides)
        picks: list[PinPick] = []
        for name in sorted(names):
            if name in revision_ids:
                picks.append(PinPick(name, revision_id=revision_ids[name]))
            elif name in overrides:
                picks.append(PinPick(name, override=await self._override(name, overrides[name], creator)))
            else:
                picks.append(PinPick(name))
        return await self._call(self._store.pin, job_id, picks, self._clock())

    async def _required_types(self) -> set[str]:
        return {t.name for t in await self._all_types() if t.required_for_lab_runs}

    async def _all_types(self) -> list[ConfigType]:
        found: list[ConfigType] = []
        after: str | None = None
        while True:
            page = await self._call(self._store.list_types, after, MAX_PAGE_SIZE)
            found.extend(page)
            if len(page) < MAX_PAGE_SIZE:
                return found
            after = page[-1].name

    async def _override(self, config_type: str, content: bytes, creator: str) -> NewRevision:
        """Override content takes the content type of the type's main (it stands in for it)."""
        await self._check_known_type(config_type)
        main = await self._call(self._store.get_main, config_type, False)
        content_type = main.revision.content_type if main is not None else ContentType.BINARY
        return new_revision(Upload(config_type, content, content_type, "", creator))


def _label(revision: Revision) -> str:
    name = f" ({revision.original_filename})" if revision.original_filename else ""
    return f"{revision.revision_id}{name}"
