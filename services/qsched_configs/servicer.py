"""qsched.configs.v1.ConfigService: translates requests into ConfigVersioning calls
and domain results and errors back into protos and google.rpc.Status."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc
from qsched_configs import convert
from qsched_configs.errors import DOMAIN
from qsched_configs.versioning import ConfigVersioning, Upload
from qsched_core.principal import attributed
from qsched_identity.audit import AuditLog
from qsched_runtime.auth import caller
from qsched_runtime.errors import translates_errors


@translates_errors(DOMAIN)
class ConfigServicer(pb_grpc.ConfigServiceServicer):
    def __init__(self, versioning: ConfigVersioning, audit: AuditLog | None = None):
        self._v = versioning
        self._audit = audit or AuditLog(None)

    async def CreateRevision(
        self, request: pb.CreateRevisionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateRevisionResponse:
        upload = Upload(
            config_type=request.config_type,
            content=request.content,
            content_type=convert.content_type_from_pb(request.content_type),
            original_filename=request.original_filename,
            creator=attributed(request.creator, caller()),
        )
        revision, created = await self._v.create_revision(upload)
        return pb.CreateRevisionResponse(revision=convert.revision_to_pb(revision), deduplicated=not created)

    async def GetRevision(
        self, request: pb.GetRevisionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetRevisionResponse:
        revision = await self._v.get_revision(request.revision_id)
        return pb.GetRevisionResponse(revision=convert.revision_to_pb(revision, with_content=True))

    async def ListRevisions(
        self, request: pb.ListRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRevisionsResponse:
        revisions, token = await self._v.list_revisions(
            request.config_type, request.page_size, request.page_token
        )
        return pb.ListRevisionsResponse(
            revisions=[convert.revision_to_pb(r) for r in revisions], next_page_token=token
        )

    async def GetMain(
        self, request: pb.GetMainRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMainResponse:
        state = await self._v.get_main(request.config_type, request.include_content)
        return pb.GetMainResponse(
            revision=convert.revision_to_pb(state.revision, with_content=request.include_content),
            etag=state.etag,
            last_change=convert.change_to_pb(state.last_change),
        )

    async def SetMain(
        self, request: pb.SetMainRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetMainResponse:
        who = caller()
        outcome = await self._v.set_main(
            request.config_type, request.revision_id, request.etag, attributed(request.changed_by, who)
        )
        if outcome.changed:
            await self._audit.record(
                who, "config.set_main", request.config_type, revision_id=request.revision_id
            )
        return pb.SetMainResponse(
            change=convert.change_to_pb(outcome.state.last_change),
            etag=outcome.state.etag,
            changed=outcome.changed,
        )

    async def PushToMain(
        self, request: pb.PushToMainRequest, context: grpc.aio.ServicerContext
    ) -> pb.PushToMainResponse:
        upload = Upload(
            config_type=request.config_type,
            content=request.content,
            content_type=convert.content_type_from_pb(request.content_type),
            original_filename=request.original_filename,
            creator=attributed(request.creator, caller()),
            job_id=request.job_id,
        )
        outcome = await self._v.push_to_main(upload, request.etag)
        if outcome.changed:
            await self._audit.record(
                caller(),
                "config.push_to_main",
                request.config_type,
                revision_id=outcome.state.revision.revision_id,
            )
        return pb.PushToMainResponse(
            revision=convert.revision_to_pb(outcome.state.revision),
            change=convert.change_to_pb(outcome.state.last_change),
            etag=outcome.state.etag,
            deduplicated=outcome.deduplicated,
            changed=outcome.changed,
        )

    async def DiffRevisions(
        self, request: pb.DiffRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DiffRevisionsResponse:
        text, identical = await self._v.diff(request.from_revision_id, request.to_revision_id)
        return pb.DiffRevisionsResponse(unified_diff=text, identical=identical)

    async def ListMainHistory(
        self, request: pb.ListMainHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMainHistoryResponse:
        changes, token = await self._v.list_main_history(
            request.config_type, request.page_size, request.page_token
        )
        return pb.ListMainHistoryResponse(
            changes=[convert.change_to_pb(c) for c in changes], next_page_token=token
        )

    async def ListConfigTypes(
        self, request: pb.ListConfigTypesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConfigTypesResponse:
        types, token = await self._v.list_types(request.page_size, request.page_token)
        return pb.ListConfigTypesResponse(
            config_types=[convert.config_type_to_pb(t) for t in types], next_page_token=token
        )

    async def RegisterConfigType(
        self, request: pb.RegisterConfigTypeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterConfigTypeResponse:
        stored, created = await self._v.register_type(convert.config_type_from_pb(request.config_type))
        if created:
            await self._audit.record(caller(), "config.register_type", stored.name)
        return pb.RegisterConfigTypeResponse(config_type=convert.config_type_to_pb(stored), created=created)

    async def PinConfigs(
        self, request: pb.PinConfigsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PinConfigsResponse:
        pinned = await self._v.pin(
            request.job_id,
            list(request.config_types),
            dict(request.revision_ids),
            dict(request.overrides),
            request.creator,
        )
        return pb.PinConfigsResponse(pinned=[convert.pinned_to_pb(p) for p in pinned])

    async def WatchMainRevisions(
        self, request: pb.WatchMainRevisionsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchMainRevisionsResponse]:
        events = self._v.watch_main(request.after_change_id, convert.seconds(request.heartbeat_interval))
        async with contextlib.aclosing(events):  # a cancelled call leaves the watch at once
            async for event in events:
                yield convert.watch_event_to_pb(event)
