"""The SQL config store (SQLite or PostgreSQL through SQLAlchemy).

Every mutating call is one transaction. Concurrency between processes sharing a
database rests on the database:
- SQLite: every write transaction starts with BEGIN IMMEDIATE (the scheduler's
  make_engine), so writers are serialized and each sees the previous commit.
- PostgreSQL: SetMain locks the pointer row (SELECT ... FOR UPDATE), so of two
  callers holding the same etag the second re-reads the pointer after the first
  commits and gets ABORTED; first_job_id is set with a conditional UPDATE; id
  counters are bumped with UPDATE ... RETURNING (a row lock). The unique keys on
  (config_type, sha256), on the pointer's config_type and on type names and
  abbreviations settle the races that remain: the loser's transaction fails with an
  IntegrityError and is run again, and then sees the winner's row.

Main changes commit in the order of their ids, which is what lets a watcher follow the
history with "id > the last one I saw" and never skip a change: SQLite serializes
writers (BEGIN IMMEDIATE); on PostgreSQL a transaction that records a change first
locks config_main_changes against other writers (SHARE ROW EXCLUSIVE, which plain reads
do not wait for) and holds it until it commits, so an id is allocated only after every
lower one has committed or rolled back."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from qsched_configs import ids
from qsched_configs.content import sha256_hex
from qsched_configs.domain import (
    ConfigType,
    ContentType,
    HistoryMark,
    MainChange,
    MainRevision,
    MainState,
    NewRevision,
    Pinned,
    PinPick,
    PinSource,
    PushOutcome,
    Revision,
    SetMainOutcome,
    etag_of,
)
from qsched_configs.errors import (
    AlreadyExists,
    FailedPrecondition,
    etag_mismatch,
    revision_not_found,
    type_mismatch,
    type_not_found,
)
from qsched_configs.store.models import (
    ConfigTypeRow,
    ContentRow,
    IdCounterRow,
    MainChangeRow,
    MainPointerRow,
    RevisionRow,
)
from qsched_core.sql import read_only

T = TypeVar("T")
ATTEMPTS = 3  # a transaction that lost a uniqueness race is run again (it then sees the winner)


class SqlConfigStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._writes = sessionmaker(engine, expire_on_commit=False, autoflush=True)
        self._reads = sessionmaker(read_only(engine), expire_on_commit=False, autoflush=True)

    def close(self) -> None:
        self._engine.dispose()

    # -- transactions --------------------------------------------------------------------------------
    def _write(self, fn: Callable[[Session], T]) -> T:
        for attempt in range(ATTEMPTS):
            try:
                with self._writes() as session, session.begin():
                    return fn(session)
            except IntegrityError:
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reads() as session, session.begin():
            yield session

    # -- helpers ---------------------------------------------------------------------------------------
    def _insert(self, table: type) -> postgresql.Insert | sqlite.Insert:
        return (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(table)

    def _next_counter(self, session: Session, prefix: str) -> int:
        session.execute(
            self._insert(IdCounterRow)
            .values(prefix=prefix, counter=0)
            .on_conflict_do_nothing(index_elements=["prefix"])
        )
        return session.execute(
            update(IdCounterRow)
            .where(IdCounterRow.prefix == prefix)
            .values(counter=IdCounterRow.counter + 1)
            .returning(IdCounterRow.counter)
            .execution_options(synchronize_session=False)
        ).scalar_one()

    @staticmethod
    def _type_row(session: Session, name: str) -> ConfigTypeRow:
        row = session.get(ConfigTypeRow, name)
        if row is None:
            raise type_not_found(name)
        return row

    @staticmethod
    def _revision_row(session: Session, revision_id: str) -> RevisionRow:
        row = session.scalars(select(RevisionRow).where(RevisionRow.revision_id == revision_id)).one_or_none()
        if row is None:
            raise revision_not_found(revision_id)
        return row

    @staticmethod
    def _content(session: Session, sha256: str) -> bytes:
        return session.scalars(select(ContentRow.data).where(ContentRow.sha256 == sha256)).one()

    def _create(self, session: Session, new: NewRevision, now: datetime) -> tuple[RevisionRow, bool]:
        if sha256_hex(new.content) != new.sha256:
            raise ValueError("NewRevision.sha256 does not match its content")
        type_row = self._type_row(session, new.config_type)
        existing = session.scalars(
            select(RevisionRow).where(
                RevisionRow.config_type == new.config_type, RevisionRow.sha256 == new.sha256
            )
        ).one_or_none()
        if existing is not None:
            return existing, False
        session.execute(
            self._insert(ContentRow)
            .values(sha256=new.sha256, size_bytes=len(new.content), data=new.content)
            .on_conflict_do_nothing(index_elements=["sha256"])
        )
        prefix = ids.counter_prefix(type_row.abbreviation, now.astimezone(UTC))
        row = RevisionRow(
            revision_id=ids.format_revision_id(prefix, self._next_counter(session, prefix)),
            config_type=new.config_type,
            sha256=new.sha256,
            size_bytes=len(new.content),
            content_type=new.content_type.value,
            original_filename=new.original_filename,
            creator=new.creator,
            create_time=now,
            first_job_id=new.first_job_id or None,
        )
        session.add(row)
        session.flush()
        return row, True

    def _state(self, session: Session, pointer: MainPointerRow, with_content: bool) -> MainState:
        row = self._revision_row(session, pointer.revision_id)
        change = session.get(MainChangeRow, pointer.change_id)
        assert change is not None  # the pointer's change_id names the change that set it
        content = self._content(session, row.sha256) if with_content else None
        return MainState(_revision(row, content), etag_of(pointer.change_id), _change(change))

    def _set_main(
        self, session: Session, row: RevisionRow, etag: str, changed_by: str, now: datetime
    ) -> SetMainOutcome:
        config_type = row.config_type
        pointer = session.scalars(
            select(MainPointerRow).where(MainPointerRow.config_type == config_type).with_for_update()
        ).one_or_none()
        current = etag_of(pointer.change_id) if pointer is not None else ""
        if etag != current:
            raise etag_mismatch(config_type, etag, pointer.revision_id if pointer is not None else "")
        if pointer is not None and pointer.revision_id == row.revision_id:
            return SetMainOutcome(self._state(session, pointer, with_content=False), changed=False)
        if self._dialect == "postgresql":  # change ids commit in id order (see the module docstring)
            session.execute(text("LOCK TABLE config_main_changes IN SHARE ROW EXCLUSIVE MODE"))
        change = MainChangeRow(
            config_type=config_type,
            from_revision_id=pointer.revision_id if pointer is not None else None,
            to_revision_id=row.revision_id,
            changed_by=changed_by,
            change_time=now,
        )
        session.add(change)
        session.flush()
        if pointer is None:
            session.add(
                MainPointerRow(config_type=config_type, revision_id=row.revision_id, change_id=change.id)
            )
        else:
            pointer.revision_id = row.revision_id
            pointer.change_id = change.id
        session.flush()
        return SetMainOutcome(MainState(_revision(row), etag_of(change.id), _change(change)), changed=True)

    # -- types ---------------------------------------------------------------------------------------------
    def get_type(self, name: str) -> ConfigType | None:
        with self._read() as session:
            row = session.get(ConfigTypeRow, name)
            return _type(row) if row is not None else None

    def list_types(self, after: str | None, limit: int) -> list[ConfigType]:
        query = select(ConfigTypeRow).order_by(ConfigTypeRow.name).limit(limit)
        if after is not None:
            query = query.where(ConfigTypeRow.name > after)
        with self._read() as session:
            return [_type(row) for row in session.scalars(query)]

    def register_type(self, config_type: ConfigType, now: datetime) -> tuple[ConfigType, bool]:
        def tx(session: Session) -> tuple[ConfigType, bool]:
            existing = session.get(ConfigTypeRow, config_type.name)
            if existing is not None:
                if _type(existing) == config_type:
                    return config_type, False
                raise AlreadyExists(
                    "CONFIG_TYPE_EXISTS",
                    f"config type {config_type.name} exists with another definition",
                    config_type=config_type.name,
                )
            holder = session.scalars(
                select(ConfigTypeRow.name).where(ConfigTypeRow.abbreviation == config_type.abbreviation)
            ).one_or_none()
            if holder is not None:
                raise AlreadyExists(
                    "ABBREVIATION_IN_USE",
                    f"abbreviation {config_type.abbreviation} is used by {holder}",
                    abbreviation=config_type.abbreviation,
                    config_type=holder,
                )
            session.add(
                ConfigTypeRow(
                    name=config_type.name,
                    abbreviation=config_type.abbreviation,
                    description=config_type.description,
                    required_for_lab_runs=config_type.required_for_lab_runs,
                    create_time=now,
                )
            )
            session.flush()
            return config_type, True

        return self._write(tx)

    # -- revisions -----------------------------------------------------------------------------------------
    def create_revision(self, new: NewRevision, now: datetime) -> tuple[Revision, bool]:
        def tx(session: Session) -> tuple[Revision, bool]:
            row, created = self._create(session, new, now)
            return _revision(row), created

        return self._write(tx)

    def get_revision(self, revision_id: str, with_content: bool = True) -> Revision | None:
        with self._read() as session:
            row = session.scalars(
                select(RevisionRow).where(RevisionRow.revision_id == revision_id)
            ).one_or_none()
            if row is None:
                return None
            return _revision(row, self._content(session, row.sha256) if with_content else None)

    def list_revisions(self, config_type: str, after: int | None, limit: int) -> list[Revision]:
        query = select(RevisionRow).order_by(RevisionRow.id.desc()).limit(limit)
        if config_type:
            query = query.where(RevisionRow.config_type == config_type)
        if after is not None:
            query = query.where(RevisionRow.id < after)
        with self._read() as session:
            if config_type:
                self._type_row(session, config_type)
            return [_revision(row) for row in session.scalars(query)]

    # -- main pointers -------------------------------------------------------------------------------------
    def get_main(self, config_type: str, with_content: bool = False) -> MainState | None:
        with self._read() as session:
            self._type_row(session, config_type)
            pointer = session.get(MainPointerRow, config_type)
            return self._state(session, pointer, with_content) if pointer is not None else None

    def set_main(
        self, config_type: str, revision_id: str, etag: str, changed_by: str, now: datetime
    ) -> SetMainOutcome:
        def tx(session: Session) -> SetMainOutcome:
            if config_type:
                self._type_row(session, config_type)
            row = self._revision_row(session, revision_id)
            if config_type and row.config_type != config_type:
                raise type_mismatch(revision_id, row.config_type, config_type)
            return self._set_main(session, row, etag, changed_by, now)

        return self._write(tx)

    def push_to_main(self, new: NewRevision, etag: str, now: datetime) -> PushOutcome:
        def tx(session: Session) -> PushOutcome:
            row, created = self._create(session, new, now)
            outcome = self._set_main(session, row, etag, new.creator, now)
            return PushOutcome(outcome.state, outcome.changed, deduplicated=not created)

        return self._write(tx)

    def list_main_changes(self, config_type: str, after: int | None, limit: int) -> list[MainChange]:
        query = select(MainChangeRow).order_by(MainChangeRow.id.desc()).limit(limit)
        if config_type:
            query = query.where(MainChangeRow.config_type == config_type)
        if after is not None:
            query = query.where(MainChangeRow.id < after)
        with self._read() as session:
            if config_type:
                self._type_row(session, config_type)
            return [_change(row) for row in session.scalars(query)]

    # -- watching main ------------------------------------------------------------------------------------
    def main_revisions(self) -> list[MainRevision]:
        query = (
            select(MainChangeRow, RevisionRow)
            .join(MainPointerRow, MainPointerRow.change_id == MainChangeRow.id)
            .join(RevisionRow, RevisionRow.revision_id == MainPointerRow.revision_id)
            .order_by(MainPointerRow.config_type)
        )
        with self._read() as session:
            return [MainRevision(_change(change), _revision(row)) for change, row in session.execute(query)]

    def main_changes_after(self, after: int, limit: int) -> list[MainRevision]:
        query = (
            select(MainChangeRow, RevisionRow)
            .join(RevisionRow, RevisionRow.revision_id == MainChangeRow.to_revision_id)
            .where(MainChangeRow.id > after)
            .order_by(MainChangeRow.id)
            .limit(limit)
        )
        with self._read() as session:
            return [MainRevision(_change(change), _revision(row)) for change, row in session.execute(query)]

    def history_mark(self) -> HistoryMark:
        query = select(
            select(func.coalesce(func.max(MainChangeRow.id), 0)).scalar_subquery(),
            select(func.count()).select_from(ConfigTypeRow).scalar_subquery(),
        )
        with self._read() as session:
            last, types = session.execute(query).one()
            return HistoryMark(int(last), int(types))

    # -- pinning -------------------------------------------------------------------------------------------
    def pin(self, job_id: str, picks: Sequence[PinPick], now: datetime) -> list[Pinned]:
        def tx(session: Session) -> list[Pinned]:
            pinned: list[Pinned] = []
            for pick in picks:
                self._type_row(session, pick.config_type)
                if pick.revision_id:
                    row = self._revision_row(session, pick.revision_id)
                    if row.config_type != pick.config_type:
                        raise type_mismatch(pick.revision_id, row.config_type, pick.config_type)
                    source = PinSource.EXPLICIT
                elif pick.override is not None:
                    row, _ = self._create(session, pick.override, now)
                    source = PinSource.OVERRIDE
                else:
                    pointer = session.get(MainPointerRow, pick.config_type)
                    if pointer is None:
                        raise FailedPrecondition(
                            "NO_MAIN_REVISION",
                            f"config type {pick.config_type} has no main revision to pin; "
                            "push one or name a revision",
                            config_type=pick.config_type,
                        )
                    row = self._revision_row(session, pointer.revision_id)
                    source = PinSource.MAIN
                # Conditional, so of two jobs pinning a fresh revision at once only the first counts.
                session.execute(
                    update(RevisionRow)
                    .where(RevisionRow.id == row.id, RevisionRow.first_job_id.is_(None))
                    .values(first_job_id=job_id)
                    .execution_options(synchronize_session=False)
                )
                pinned.append(Pinned(pick.config_type, row.revision_id, row.sha256, row.size_bytes, source))
            return pinned

        return self._write(tx)


# -- rows -> domain ------------------------------------------------------------------------------------
def _type(row: ConfigTypeRow) -> ConfigType:
    return ConfigType(row.name, row.abbreviation, row.description, row.required_for_lab_runs)


def _revision(row: RevisionRow, content: bytes | None = None) -> Revision:
    return Revision(
        order=row.id,
        revision_id=row.revision_id,
        config_type=row.config_type,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        content_type=ContentType(row.content_type),
        original_filename=row.original_filename,
        creator=row.creator,
        create_time=row.create_time,
        first_job_id=row.first_job_id or "",
        content=content,
    )


def _change(row: MainChangeRow) -> MainChange:
    return MainChange(
        order=row.id,
        config_type=row.config_type,
        from_revision_id=row.from_revision_id or "",
        to_revision_id=row.to_revision_id,
        changed_by=row.changed_by,
        change_time=row.change_time,
    )
