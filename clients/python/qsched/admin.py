"""Users, tokens and the audit log (qsched.admin.v1.AdminService, hosted by the scheduler).
Everything but `whoami` needs the admin role.

    from qsched.admin import AdminClient
    with AdminClient() as admin:
        admin.create_user("bob", roles=["operator"])
        secret = admin.issue_token("bob", label="bob's laptop")["secret"]  # shown once
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from qsched import connection
from qsched.api.admin.v1 import admin_pb2 as pb
from qsched.calls import Calls

ROLES = ("operator", "calibrator", "admin", "scheduler")


def role_value(name: str) -> int:
    key = f"ROLE_{name.strip().upper()}"
    if name.strip().lower() not in ROLES:
        raise ValueError(f"unknown role {name!r} (known: {', '.join(ROLES)})")
    return pb.Role.Value(key)


def _when(ts: Any) -> Any:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def _token(t: Any) -> dict[str, Any]:
    return {
        "token_id": t.token_id,
        "label": t.label,
        "create_time": _when(t.create_time),
        "revoke_time": _when(t.revoke_time),
    }


def _user(u: Any) -> dict[str, Any]:
    return {
        "name": u.name,
        "kind": "service" if u.kind == pb.PRINCIPAL_KIND_SERVICE else "user",
        "roles": [pb.Role.Name(r).removeprefix("ROLE_").lower() for r in u.roles],
        "create_time": _when(u.create_time),
        "created_by": u.created_by,
        "tokens": [_token(t) for t in u.tokens],
    }


class AdminClient:
    def __init__(self, address: str | None = None, *, timeout: float = 30.0, token: str | None = None):
        self.address = connection.scheduler_address(address)
        self._channel = connection.channel(self.address, token)
        self.calls = Calls(self._channel, "AdminService", pb, self.address, timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def whoami(self) -> dict[str, Any]:
        response = self.calls("WhoAmI", pb.WhoAmIRequest())
        return {**_user(response.user), "token_id": response.token_id}

    def create_user(self, name: str, roles: list[str] | tuple[str, ...] = (), service: bool = False) -> dict:
        kind = pb.PRINCIPAL_KIND_SERVICE if service else pb.PRINCIPAL_KIND_USER
        request = pb.CreateUserRequest(name=name, roles=[role_value(r) for r in roles], kind=kind)
        return _user(self.calls("CreateUser", request).user)

    def list_users(self) -> list[dict[str, Any]]:
        return [_user(u) for u in self.calls("ListUsers", pb.ListUsersRequest()).users]

    def set_roles(self, name: str, roles: list[str] | tuple[str, ...]) -> dict[str, Any]:
        request = pb.SetUserRolesRequest(name=name, roles=[role_value(r) for r in roles])
        return _user(self.calls("SetUserRoles", request).user)

    def issue_token(self, name: str, label: str = "") -> dict[str, Any]:
        """{"token_id", "label", "create_time", "secret"}: the secret is shown only here."""
        response = self.calls("IssueToken", pb.IssueTokenRequest(name=name, label=label))
        return {**_token(response.token), "secret": response.secret}

    def revoke_tokens(self, name: str, token_id: str = "") -> list[str]:
        """Revoke one token of `name`, or all of them; the ids revoked."""
        return list(
            self.calls("RevokeTokens", pb.RevokeTokensRequest(name=name, token_id=token_id)).token_ids
        )

    def audit_events(self, limit: int = 100, actor: str = "") -> list[dict[str, Any]]:
        """Privileged actions, newest first."""
        out: list[dict[str, Any]] = []
        token = ""
        while len(out) < limit:
            request = pb.ListAuditEventsRequest(
                page_size=min(1000, limit - len(out)), page_token=token, actor=actor
            )
            response = self.calls("ListAuditEvents", request)
            out += [
                {
                    "time": _when(e.time),
                    "actor": e.actor,
                    "service": e.service,
                    "action": e.action,
                    "target": e.target,
                    "detail": dict(e.detail),
                }
                for e in response.events
            ]
            token = response.next_page_token
            if not token:
                break
        return out
