"""The identity tables (SQLAlchemy 2 declarative). The schema is created by the Alembic
migrations in qsched_identity/migrations, which these models must match. Every table is
prefixed `identity_` and the version table is `alembic_version_identity`, so the
database may be shared with the scheduler's and the config service's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qsched_core.sql import NAMING_CONVENTION, BigId, JsonText, UtcDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


class UserRow(Base):
    """A person or a service principal."""

    __tablename__ = "identity_users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    roles: Mapped[list[str]] = mapped_column(JsonText)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    disable_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class TokenRow(Base):
    """A bearer token: only its SHA-256 is kept."""

    __tablename__ = "identity_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("identity_users.name"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    revoke_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditRow(Base):
    """One privileged action (or a refused attempt at one)."""

    __tablename__ = "identity_audit"
    __table_args__ = (Index("ix_identity_audit_time", "time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, str]] = mapped_column(JsonText)
