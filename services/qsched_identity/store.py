"""The identity database behind a narrow interface: users, hashed tokens, the audit log."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from qsched_core.errors import AlreadyExists, InvalidArgument, NotFound
from qsched_core.principal import Kind, Principal, Role
from qsched_core.sql import read_only
from qsched_identity.models import AuditRow, TokenRow, UserRow
from qsched_identity.tokens import new_token, new_token_id, token_hash

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    label: str
    create_time: datetime
    revoke_time: datetime | None


@dataclass(frozen=True)
class User:
    name: str
    kind: Kind
    roles: frozenset[Role]
    create_time: datetime
    created_by: str
    tokens: tuple[TokenInfo, ...] = ()

    @property
    def active_tokens(self) -> int:
        return sum(1 for t in self.tokens if t.revoke_time is None)


@dataclass(frozen=True)
class AuditEntry:
    time: datetime
    actor: str
    service: str
    action: str
    target: str
    detail: dict[str, str] = field(default_factory=dict)
    id: int = 0


@dataclass(frozen=True)
class Lookup:
    """What a token hash resolves to: a principal, or why not (`reason`)."""

    principal: Principal | None
    reason: str = ""


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidArgument(
            "INVALID_USER_NAME",
            f"user name {name!r} must be 1-64 characters: letters, digits, '_', '.', '-'",
            name=name,
        )
    return name


class IdentityStore:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._reader = read_only(engine)

    def close(self) -> None:
        self._engine.dispose()

    # -- users ---------------------------------------------------------------------------------------------
    def create_user(
        self, name: str, kind: Kind, roles: frozenset[Role], created_by: str, now: datetime
    ) -> User:
        check_name(name)
        row = UserRow(
            name=name,
            kind=str(kind),
            roles=sorted(str(r) for r in roles),
            create_time=now,
            created_by=created_by,
        )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(row)
        except IntegrityError:
            raise AlreadyExists("USER_EXISTS", f"user {name!r} already exists", name=name) from None
        return User(name, kind, roles, now, created_by)

    def get_user(self, name: str) -> User | None:
        with Session(self._reader) as session:
            row = session.get(UserRow, name)
            if row is None:
                return None
            tokens = session.scalars(
                select(TokenRow).where(TokenRow.user_name == name).order_by(TokenRow.create_time)
            ).all()
            return _user(row, tokens)

    def list_users(self) -> list[User]:
        with Session(self._reader) as session:
            rows = session.scalars(select(UserRow).order_by(UserRow.name)).all()
            tokens: dict[str, list[TokenRow]] = {}
            for token in session.scalars(select(TokenRow).order_by(TokenRow.create_time)):
                tokens.setdefault(token.user_name, []).append(token)
            return [_user(row, tokens.get(row.name, [])) for row in rows]

    def set_roles(self, name: str, roles: frozenset[Role]) -> User:
        with Session(self._engine) as session, session.begin():
            row = session.get(UserRow, name)
            if row is None:
                raise _no_user(name)
            row.roles = sorted(str(r) for r in roles)
        user = self.get_user(name)
        assert user is not None
        return user

    # -- tokens --------------------------------------------------------------------------------------------
    def issue_token(self, name: str, label: str, now: datetime) -> tuple[TokenInfo, str]:
        """A new token for `name`: its record and the secret, which is not kept anywhere."""
        secret = new_token()
        info = TokenInfo(new_token_id(), label, now, None)
        with Session(self._engine) as session, session.begin():
            if session.get(UserRow, name) is None:
                raise _no_user(name)
            session.add(
                TokenRow(
                    token_id=info.token_id,
                    user_name=name,
                    sha256=token_hash(secret),
                    label=label,
                    create_time=now,
                )
            )
        return info, secret

    def revoke_tokens(self, name: str, token_id: str, now: datetime) -> list[str]:
        """Revoke one token of `name` (or every active one when token_id is ""); the ids revoked."""
        with Session(self._engine) as session, session.begin():
            if session.get(UserRow, name) is None:
                raise _no_user(name)
            query = select(TokenRow.token_id).where(
                TokenRow.user_name == name, TokenRow.revoke_time.is_(None)
            )
            if token_id:
                query = query.where(TokenRow.token_id == token_id)
            ids = list(session.scalars(query))
            if token_id and not ids:
                raise NotFound(
                    "TOKEN_NOT_FOUND",
                    f"user {name!r} has no active token {token_id!r}",
                    name=name,
                    token_id=token_id,
                )
            if ids:
                session.execute(update(TokenRow).where(TokenRow.token_id.in_(ids)).values(revoke_time=now))
            return ids

    def lookup(self, sha256: str) -> Lookup:
        with Session(self._reader) as session:
            found = session.execute(
                select(TokenRow, UserRow)
                .join(UserRow, UserRow.name == TokenRow.user_name)
                .where(TokenRow.sha256 == sha256)
            ).first()
            if found is None:
                return Lookup(None, "INVALID_TOKEN")
            token, user = found
            if token.revoke_time is not None:
                return Lookup(None, "TOKEN_REVOKED")
            if user.disable_time is not None:
                return Lookup(None, "USER_DISABLED")
            roles = frozenset(Role(r) for r in user.roles)
            return Lookup(Principal(user.name, Kind(user.kind), roles, token.token_id))

    # -- audit ---------------------------------------------------------------------------------------------
    def record(self, entry: AuditEntry) -> None:
        with Session(self._engine) as session, session.begin():
            session.add(
                AuditRow(
                    time=entry.time,
                    actor=entry.actor,
                    service=entry.service,
                    action=entry.action,
                    target=entry.target,
                    detail=dict(entry.detail),
                )
            )

    def audit_entries(self, limit: int, before_id: int = 0, actor: str = "") -> list[AuditEntry]:
        """Newest first."""
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if before_id:
            query = query.where(AuditRow.id < before_id)
        if actor:
            query = query.where(AuditRow.actor == actor)
        with Session(self._reader) as session:
            return [
                AuditEntry(r.time, r.actor, r.service, r.action, r.target, dict(r.detail), r.id)
                for r in session.scalars(query)
            ]

    def user_count(self) -> int:
        with Session(self._reader) as session:
            return session.scalar(select(func.count()).select_from(UserRow)) or 0


def _user(row: UserRow, tokens: list[TokenRow] | tuple[TokenRow, ...]) -> User:
    infos = tuple(TokenInfo(t.token_id, t.label, t.create_time, t.revoke_time) for t in tokens)
    return User(
        row.name,
        Kind(row.kind),
        frozenset(Role(r) for r in row.roles),
        row.create_time,
        row.created_by,
        infos,
    )


def _no_user(name: str) -> NotFound:
    return NotFound("USER_NOT_FOUND", f"no user {name!r}", name=name)
