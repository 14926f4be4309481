"""Bearer token → Principal, with a short cache so a busy service does not read the
identity database on every call. A revoked token stops working in the process that
revoked it at once and in every other process within `cache_seconds`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from qsched_core.errors import DomainError
from qsched_core.principal import Principal
from qsched_identity.store import AuditEntry, IdentityStore, Lookup
from qsched_identity.tokens import token_hash

DEFAULT_CACHE_SECONDS = 1.0
MAX_CACHED = 10_000


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Authenticator:
    def __init__(
        self,
        store: IdentityStore,
        service: str,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.service = service
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Lookup]] = {}

    async def authenticate(self, token: str) -> Principal:
        if not token:
            raise Unauthenticated(
                "MISSING_TOKEN",
                "this call needs a bearer token (metadata 'authorization: Bearer <token>'); "
                "`qsched up` writes yours to ~/.config/qsched/token",
            )
        digest = token_hash(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            lookup = cached[1]
        else:
            lookup = await asyncio.to_thread(self.store.lookup, digest)
            if lookup.principal is not None and self._cache_seconds > 0:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[digest] = (now + self._cache_seconds, lookup)
        if lookup.principal is None:
            raise Unauthenticated(lookup.reason, _MESSAGES.get(lookup.reason, "the token is not valid"))
        return lookup.principal

    def forget(self, user: str = "") -> None:
        """Drop cached principals (of one user, or all): after a revoke or a role change."""
        if not user:
            self._cache.clear()
            return
        for digest, (_, lookup) in list(self._cache.items()):
            if lookup.principal is not None and lookup.principal.name == user:
                self._cache.pop(digest, None)

    async def audit(
        self, actor: Principal, action: str, target: str, now: datetime, **detail: object
    ) -> None:
        entry = AuditEntry(
            now, actor.name, self.service, action, target, {k: str(v) for k, v in detail.items()}
        )
        await asyncio.to_thread(self.store.record, entry)

    def close(self) -> None:
        self.store.close()


_MESSAGES = {
    "INVALID_TOKEN": "the bearer token is not known to this qsched installation",
    "TOKEN_REVOKED": "the bearer token has been revoked; ask an admin for a new one",
    "USER_DISABLED": "the user of this token is disabled",
}
