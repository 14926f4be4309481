"""Recording privileged actions in the identity database's audit log."""

from __future__ import annotations

from qsched_core.clock import utcnow
from qsched_core.principal import Principal
from qsched_identity.authenticator import Authenticator


class AuditLog:
    """Appends to the audit log, or does nothing for a service started without security
    (in-process test doubles)."""

    def __init__(self, authenticator: Authenticator | None):
        self._authenticator = authenticator

    async def record(self, actor: Principal, action: str, target: str, **detail: object) -> None:
        if self._authenticator is not None:
            await self._authenticator.audit(actor, action, target, utcnow(), **detail)
