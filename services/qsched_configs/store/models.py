"""The config service's tables (SQLAlchemy 2 declarative). The schema itself is
created by the Alembic migrations in qsched_configs/migrations; these models must
match them (tests/configs/test_migrations.py compares the two).

Where content lives: in the database, in `config_contents`, one row per distinct
SHA-256 (a content-addressed table), written once and never updated. Chosen over
blob files because
- a revision and its content commit in one transaction: no orphan or missing
  file after a crash, and a rolled-back request leaves nothing behind;
- it works the same on SQLite and PostgreSQL, and several service replicas on one
  PostgreSQL need no shared file system; a backup of the database is complete;
- content is small (at most 4 MiB, configs are typically a few KiB), and the
  original file name never becomes a path, so nothing user-supplied touches the
  file system.
Revisions of different types with the same bytes share one content row.

Every table is prefixed `config_` and Alembic keeps its own version table
(`alembic_version_configs`), so the service can even share a PostgreSQL database
with the scheduler without clashing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qsched_core.sql import NAMING_CONVENTION, UtcDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# BIGINT that is still SQLite's INTEGER rowid alias (so it autoincrements there).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


class ConfigTypeRow(Base):
    __tablename__ = "config_types"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    abbreviation: Mapped[str] = mapped_column(String(2), unique=True)
    description: Mapped[str] = mapped_column(Text)
    required_for_lab_runs: Mapped[bool] = mapped_column(Boolean)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)


class ContentRow(Base):
    """Immutable content, addressed by its SHA-256 (lower-case hex)."""

    __tablename__ = "config_contents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RevisionRow(Base):
    __tablename__ = "config_revisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)  # Revision.order
    revision_id: Mapped[str] = mapped_column(String(32), unique=True)
    config_type: Mapped[str] = mapped_column(String(64), ForeignKey("config_types.name"))
    sha256: Mapped[str] = mapped_column(String(64), ForeignKey("config_contents.sha256"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(16))  # ContentType value
    original_filename: Mapped[str] = mapped_column(String(255))
    creator: Mapped[str] = mapped_column(String(128))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    first_job_id: Mapped[str | None] = mapped_column(String(64))

    # One revision per (type, content): the dedup rule is the database's too.
    __table_args__ = (UniqueConstraint("config_type", "sha256"), {"sqlite_autoincrement": True})


# "Newest first, of one type".
Index("ix_config_revisions_type_order", RevisionRow.config_type, RevisionRow.id)


class MainPointerRow(Base):
    """The main revision of a type; `change_id` (the last change) is what etags are made of."""

    __tablename__ = "config_main_pointers"

    config_type: Mapped[str] = mapped_column(String(64), ForeignKey("config_types.name"), primary_key=True)
    revision_id: Mapped[str] = mapped_column(String(32), ForeignKey("config_revisions.revision_id"))
    change_id: Mapped[int] = mapped_column(BigInteger)


class MainChangeRow(Base):
    """Every change of a main pointer; rows are only ever added."""

    __tablename__ = "config_main_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)  # MainChange.order
    config_type: Mapped[str] = mapped_column(String(64), ForeignKey("config_types.name"))
    from_revision_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("config_revisions.revision_id")
    )
    to_revision_id: Mapped[str] = mapped_column(String(32), ForeignKey("config_revisions.revision_id"))
    changed_by: Mapped[str] = mapped_column(String(128))
    change_time: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = {"sqlite_autoincrement": True}


Index("ix_config_main_changes_type_order", MainChangeRow.config_type, MainChangeRow.id)


class IdCounterRow(Base):
    """Per-day-per-type revision counters (prefix CFG-HW-YYYYMMDD -> last number handed out)."""

    __tablename__ = "config_id_counters"

    prefix: Mapped[str] = mapped_column(String(32), primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger)
