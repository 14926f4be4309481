"""Principals and roles. Pure data: no storage, no gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    # People. Every person may act on their own jobs; the roles below add to that.
    OPERATOR = "operator"  # cancel anyone's job, hold device queues, priorities above the user limit
    CALIBRATOR = "calibrator"  # set main config revisions (also the scheduler's calibration principal)
    ADMIN = "admin"  # users, tokens, the audit log
    # Services. The executor and the gateway take calls only from a principal with this role.
    SCHEDULER = "scheduler"


HUMAN_ROLES = frozenset({Role.OPERATOR, Role.CALIBRATOR, Role.ADMIN})
SERVICE_ROLES = frozenset({Role.SCHEDULER, Role.CALIBRATOR})


class Kind(StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `token_id` names the credential used (for the audit log)."""

    name: str
    kind: Kind
    roles: frozenset[Role]
    token_id: str = ""

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def is_user(self) -> bool:
        return self.kind is Kind.USER


def parse_roles(values: list[str] | tuple[str, ...], kind: Kind = Kind.USER) -> frozenset[Role]:
    """Role names → roles, refusing unknown names and roles that do not fit the kind."""
    allowed = SERVICE_ROLES if kind is Kind.SERVICE else HUMAN_ROLES
    roles = set()
    for value in values:
        name = value.strip().lower()
        if name in ("", "user"):  # "user" is what every person is; accepted for readability
            continue
        try:
            role = Role(name)
        except ValueError:
            known = ", ".join(sorted(["user", *allowed]))
            raise ValueError(f"unknown role {value!r} (known: {known})") from None
        if role not in allowed:
            raise ValueError(f"role {role} is not for a {kind} principal")
        roles.add(role)
    return frozenset(roles)


def acting_as(claimed: str, principal: Principal) -> str:
    """The name to record for an action: the caller's own. A name the request carries
    (the seed's `user=`, a config's `creator`) is accepted only when it is the caller's,
    optionally annotated ("alice (qsched up)"); otherwise the request is refused."""
    claimed = claimed.strip()
    if not claimed or claimed == principal.name or claimed.startswith(principal.name + " "):
        # The caller's own name, never the annotated one: a job owned by "alice (laptop)" would
        # not be alice's (NOT_JOB_OWNER on her own cancel) and would escape her queued-jobs quota.
        return principal.name
    from qsched_core.errors import PermissionDenied

    raise PermissionDenied(
        "USER_MISMATCH",
        f"authenticated as {principal.name!r} but the request names {claimed!r}; "
        "omit the user or use your own name",
        authenticated=principal.name,
        claimed=claimed,
    )


def attributed(claimed: str, principal: Principal) -> str:
    """For free-text attribution fields (a config revision's creator): always the caller's
    name, with a different claimed name kept only as a note, "alice (lab laptop)"."""
    claimed = claimed.strip()
    if not claimed or claimed == principal.name or claimed.startswith(principal.name + " "):
        return claimed or principal.name
    return f"{principal.name} ({claimed})"
