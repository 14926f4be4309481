"""qsched.admin.v1.AdminService: translates requests into AdminDesk calls."""

from __future__ import annotations

from datetime import datetime

import grpc
from google.protobuf import timestamp_pb2

from qsched.api.admin.v1 import admin_pb2 as pb
from qsched.api.admin.v1 import admin_pb2_grpc as pb_grpc
from qsched_core.principal import Kind, Role
from qsched_identity.admin import AdminDesk
from qsched_identity.store import TokenInfo, User
from qsched_runtime.auth import Anyone, caller
from qsched_runtime.errors import translates_errors

DOMAIN = "qsched.admin.v1"
POLICY = {
    "WhoAmI": Anyone.PRINCIPAL,
    "CreateUser": Role.ADMIN,
    "ListUsers": Role.ADMIN,
    "SetUserRoles": Role.ADMIN,
    "IssueToken": Role.ADMIN,
    "RevokeTokens": Role.ADMIN,
    "ListAuditEvents": Role.ADMIN,
}
ROLE_TO_PB = {
    Role.OPERATOR: pb.ROLE_OPERATOR,
    Role.CALIBRATOR: pb.ROLE_CALIBRATOR,
    Role.ADMIN: pb.ROLE_ADMIN,
    Role.SCHEDULER: pb.ROLE_SCHEDULER,
}
PB_TO_ROLE = {v: k for k, v in ROLE_TO_PB.items()}
KIND_TO_PB = {Kind.USER: pb.PRINCIPAL_KIND_USER, Kind.SERVICE: pb.PRINCIPAL_KIND_SERVICE}


@translates_errors(DOMAIN)
class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, desk: AdminDesk):
        self._desk = desk

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.WhoAmIResponse:
        who = caller()
        user = await self._desk.whoami(who)
        return pb.WhoAmIResponse(user=_user(user, with_tokens=False), token_id=who.token_id)

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateUserResponse:
        kind = Kind.SERVICE if request.kind == pb.PRINCIPAL_KIND_SERVICE else Kind.USER
        user = await self._desk.create_user(caller(), request.name, kind, _roles(request.roles))
        return pb.CreateUserResponse(user=_user(user))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        return pb.ListUsersResponse(users=[_user(u) for u in await self._desk.list_users()])

    async def SetUserRoles(
        self, request: pb.SetUserRolesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetUserRolesResponse:
        user = await self._desk.set_roles(caller(), request.name, _roles(request.roles))
        return pb.SetUserRolesResponse(user=_user(user))

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueTokenResponse:
        info, secret = await self._desk.issue_token(caller(), request.name, request.label)
        return pb.IssueTokenResponse(token=_token(info), secret=secret)

    async def RevokeTokens(
        self, request: pb.RevokeTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTokensResponse:
        revoked = await self._desk.revoke_tokens(caller(), request.name, request.token_id)
        return pb.RevokeTokensResponse(token_ids=revoked)

    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAuditEventsResponse:
        entries, token = await self._desk.audit_events(request.page_size, request.page_token, request.actor)
        events = [
            pb.AuditEvent(
                time=_ts(e.time),
                actor=e.actor,
                service=e.service,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in entries
        ]
        return pb.ListAuditEventsResponse(events=events, next_page_token=token)


def _roles(values: object) -> frozenset[Role]:
    from qsched_core.errors import InvalidArgument

    roles = set()
    for value in values:  # type: ignore[attr-defined]
        if value not in PB_TO_ROLE:
            raise InvalidArgument("UNKNOWN_ROLE", f"unknown role {value}", role=value)
        roles.add(PB_TO_ROLE[value])
    return frozenset(roles)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _token(info: TokenInfo) -> pb.Token:
    return pb.Token(
        token_id=info.token_id,
        label=info.label,
        create_time=_ts(info.create_time),
        revoke_time=_ts(info.revoke_time),
    )


def _user(user: User, with_tokens: bool = True) -> pb.User:
    return pb.User(
        name=user.name,
        kind=KIND_TO_PB[user.kind],
        roles=sorted(ROLE_TO_PB[r] for r in user.roles),
        create_time=_ts(user.create_time),
        created_by=user.created_by,
        tokens=[_token(t) for t in user.tokens] if with_tokens else [],
    )
