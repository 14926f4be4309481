"""Identity domain objects <-> qsched.admin.v1 messages."""

from __future__ import annotations

from qsched.api.admin.v1 import admin_pb2 as pb
from qsched.wire import timestamp
from qsched_core.errors import InvalidArgument
from qsched_core.principal import Kind, Role
from qsched_identity.store import TokenInfo, User

ROLE_TO_PB = {
    Role.OPERATOR: pb.ROLE_OPERATOR,
    Role.CALIBRATOR: pb.ROLE_CALIBRATOR,
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.SCHEDULER: pb.ROLE_SCHEDULER,
}
PB_TO_ROLE = {v: k for k, v in ROLE_TO_PB.items()}
KIND_TO_PB = {Kind.USER: pb.PRINCIPAL_KIND_USER, Kind.SERVICE: pb.PRINCIPAL_KIND_SERVICE}


def roles_from_pb(values: object) -> frozenset[Role]:
    roles = set()
    for value in values:  # type: ignore[attr-defined]
        if value not in PB_TO_ROLE:
            raise InvalidArgument("UNKNOWN_ROLE", f"unknown role {value}", role=value)
        roles.add(PB_TO_ROLE[value])
    return frozenset(roles)


def token_to_pb(info: TokenInfo) -> pb.Token:
    return pb.Token(
        token_id=info.token_id,
        label=info.label,
        create_time=timestamp(info.create_time),
        revoke_time=timestamp(info.revoke_time),
    )


def user_to_pb(user: User, with_tokens: bool = True) -> pb.User:
    return pb.User(
        name=user.name,
        kind=KIND_TO_PB[user.kind],
        roles=sorted(ROLE_TO_PB[r] for r in user.roles),
        create_time=timestamp(user.create_time),
        created_by=user.created_by,
        tokens=[token_to_pb(t) for t in user.tokens] if with_tokens else [],
    )
