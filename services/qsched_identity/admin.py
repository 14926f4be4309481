"""Managing users and tokens, and reading the audit log: what `qsched admin` does,
through qsched.admin.v1.AdminService. Every change is itself audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from qsched_core.clock import utcnow
from qsched_core.errors import InvalidArgument, NotFound
from qsched_core.principal import Kind, Principal, Role
from qsched_identity.authenticator import Authenticator
from qsched_identity.store import AuditEntry, TokenInfo, User

MAX_AUDIT_PAGE = 1000
DEFAULT_AUDIT_PAGE = 100
ALLOWED_ROLES = {
    Kind.USER: frozenset({Role.OPERATOR, Role.CALIBRATOR, Role.ADMIN}),
    Kind.SERVICE: frozenset({Role.SCHEDULER, Role.CALIBRATOR}),
}


class AdminDesk:
    def __init__(self, authenticator: Authenticator, clock: Callable[[], datetime] = utcnow):
        self._auth = authenticator
        self._store = authenticator.store
        self._clock = clock

    async def whoami(self, who: Principal) -> User:
        user = await asyncio.to_thread(self._store.get_user, who.name)
        if user is None:  # deleted between authentication and now
            raise NotFound("USER_NOT_FOUND", f"no user {who.name!r}", name=who.name)
        return user

    async def create_user(self, who: Principal, name: str, kind: Kind, roles: frozenset[Role]) -> User:
        _check_roles(kind, roles)
        user = await asyncio.to_thread(self._store.create_user, name, kind, roles, who.name, self._clock())
        await self._record(who, "user.create", name, kind=str(kind), roles=_names(roles))
        return user

    async def list_users(self) -> list[User]:
        return await asyncio.to_thread(self._store.list_users)

    async def set_roles(self, who: Principal, name: str, roles: frozenset[Role]) -> User:
        current = await asyncio.to_thread(self._store.get_user, name)
        if current is None:
            raise NotFound("USER_NOT_FOUND", f"no user {name!r}", name=name)
        _check_roles(current.kind, roles)
        user = await asyncio.to_thread(self._store.set_roles, name, roles)
        self._auth.forget(name)
        await self._record(who, "user.set_roles", name, roles=_names(roles), previous=_names(current.roles))
        return user

    async def issue_token(self, who: Principal, name: str, label: str) -> tuple[TokenInfo, str]:
        info, secret = await asyncio.to_thread(self._store.issue_token, name, label, self._clock())
        await self._record(who, "token.issue", name, token_id=info.token_id, label=label)
        return info, secret

    async def revoke_tokens(self, who: Principal, name: str, token_id: str) -> list[str]:
        revoked = await asyncio.to_thread(self._store.revoke_tokens, name, token_id, self._clock())
        self._auth.forget(name)
        await self._record(who, "token.revoke", name, token_ids=",".join(revoked))
        return revoked

    async def audit_events(self, page_size: int, page_token: str, actor: str) -> tuple[list[AuditEntry], str]:
        if page_size < 0:
            raise InvalidArgument("INVALID_PAGE_SIZE", "page_size must not be negative")
        size = min(page_size or DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE)
        before = 0
        if page_token:
            try:
                before = int(page_token.removeprefix("before:"))
            except ValueError:
                raise InvalidArgument(
                    "INVALID_PAGE_TOKEN", "page_token is not one this service gave"
                ) from None
        entries = await asyncio.to_thread(self._store.audit_entries, size + 1, before, actor)
        more = len(entries) > size
        entries = entries[:size]
        return entries, f"before:{entries[-1].id}" if more and entries else ""

    async def _record(self, who: Principal, action: str, target: str, **detail: object) -> None:
        await self._auth.audit(who, action, target, self._clock(), **detail)


def _check_roles(kind: Kind, roles: frozenset[Role]) -> None:
    wrong = sorted(str(r) for r in roles - ALLOWED_ROLES[kind])
    if wrong:
        raise InvalidArgument(
            "ROLE_NOT_ALLOWED", f"a {kind} principal cannot hold {', '.join(wrong)}", roles=",".join(wrong)
        )


def _names(roles: frozenset[Role]) -> str:
    return ",".join(sorted(str(r) for r in roles)) or "user"
