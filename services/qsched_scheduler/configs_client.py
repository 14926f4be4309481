"""Config versioning, reached over gRPC (qsched.configs.v1.ConfigService/PinConfigs)."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc
from qsched_runtime.errors import peer_error
from qsched_runtime.security import PeerCredentials
from qsched_scheduler.config_port import ConfigsUnavailable, PinnedConfig, PinRefused

PIN_TIMEOUT_S = 10.0


class GrpcConfigPinner:
    def __init__(self, address: str, credentials: PeerCredentials | None = None):
        self._channel = (credentials or PeerCredentials()).channel(address)
        self._stub = pb_grpc.ConfigServiceStub(self._channel)

    async def pin(
        self, job_id: str, revision_ids: Mapping[str, str], overrides: Mapping[str, str], creator: str
    ) -> list[PinnedConfig]:
        request = pb.PinConfigsRequest(
            job_id=job_id,
            revision_ids=dict(revision_ids),
            overrides={k: v.encode() for k, v in overrides.items()},
            creator=creator,
        )
        try:
            response = await self._stub.PinConfigs(request, timeout=PIN_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise peer_error(error, ConfigsUnavailable, PinRefused) from error
        return [PinnedConfig(p.config_type, p.revision_id, p.sha256) for p in response.pinned]

    async def close(self) -> None:
        await self._channel.close()
