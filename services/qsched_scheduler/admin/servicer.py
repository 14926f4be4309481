"""qsched.admin.v1.AdminService, hosted by the scheduler: translates requests into calls of the
identity library's AdminDesk (users, tokens and the audit log live in the identity database)."""

from __future__ import annotations

import grpc

from qsched.api.admin.v1 import admin_pb2 as pb
from qsched.api.admin.v1 import admin_pb2_grpc as pb_grpc
from qsched_core.principal import Kind, Role
from qsched_identity.admin import AdminDesk
from qsched_runtime.auth import Anyone, caller
from qsched_runtime.errors import translates_errors
from qsched_scheduler.admin import convert

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


@translates_errors(DOMAIN)
class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, desk: AdminDesk):
        self._desk = desk

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.WhoAmIResponse:
        who = caller()
        user = await self._desk.whoami(who)
        return pb.WhoAmIResponse(user=convert.user_to_pb(user, with_tokens=False), token_id=who.token_id)

    async def CreateUser(
        self, request: pb.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateUserResponse:
        kind = Kind.SERVICE if request.kind == pb.PRINCIPAL_KIND_SERVICE else Kind.USER
        user = await self._desk.create_user(
            caller(), request.name, kind, convert.roles_from_pb(request.roles)
        )
        return pb.CreateUserResponse(user=convert.user_to_pb(user))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListUsersResponse:
        return pb.ListUsersResponse(users=[convert.user_to_pb(u) for u in await self._desk.list_users()])

    async def SetUserRoles(
        self, request: pb.SetUserRolesRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetUserRolesResponse:
        user = await self._desk.set_roles(caller(), request.name, convert.roles_from_pb(request.roles))
        return pb.SetUserRolesResponse(user=convert.user_to_pb(user))

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.IssueTokenResponse:
        info, secret = await self._desk.issue_token(caller(), request.name, request.label)
        return pb.IssueTokenResponse(token=convert.token_to_pb(info), secret=secret)

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
                time=convert.timestamp(e.time),
                actor=e.actor,
                service=e.service,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in entries
        ]
        return pb.ListAuditEventsResponse(events=events, next_page_token=token)
