"""Pinned hardware configs: fetched from the config service (qsched.configs.v1 GetRevision),
checked against the pinned SHA-256, cached by hash."""

from __future__ import annotations

import grpc

from qsched.api.configs.v1 import configs_pb2, configs_pb2_grpc
from qsched_executor.errors import ConfigUnavailable
from qsched_hardware.hwconfig import HardwareConfigError, parsed_hardware_config, sha256_hex
from qsched_runtime.security import PeerCredentials
from qsched_runtime.server import MAX_MESSAGE_BYTES

HARDWARE_CONFIG = "hardware_config"


class PinnedConfigs:
    def __init__(self, address: str, credentials: PeerCredentials | None = None, timeout_s: float = 10.0):
        self.address = address
        self._credentials = credentials or PeerCredentials()
        self.timeout_s = timeout_s
        self._cache: dict[str, bytes] = {}  # sha256 -> content
        self._channel: grpc.aio.Channel | None = None

    async def content(self, revision_id: str, sha256: str) -> bytes:
        if sha256 and sha256 in self._cache:
            return self._cache[sha256]
        if self._channel is None:
            # Revisions may be up to the config service's content limit (4 MiB): lift gRPC's
            # 4 MiB default receive limit to the size every qsched server accepts.
            self._channel = self._credentials.channel(
                self.address, [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
            )
        stub = configs_pb2_grpc.ConfigServiceStub(self._channel)
        try:
            response = await stub.GetRevision(
                configs_pb2.GetRevisionRequest(revision_id=revision_id), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise ConfigUnavailable(
                "CONFIG_UNAVAILABLE",
                f"config revision {revision_id} could not be fetched from {self.address}: "
                f"{exc.code().name}: {exc.details()}",
                revision_id=revision_id,
            ) from exc
        content = response.revision.content
        actual = sha256_hex(content)
        expected = sha256 or response.revision.sha256
        if expected and actual != expected.lower():
            raise ConfigUnavailable(
                "CONFIG_CHECKSUM_MISMATCH",
                f"config revision {revision_id}: content has sha256 {actual}, pinned {expected}",
                revision_id=revision_id,
            )
        self._cache[actual] = content
        return content

    async def hardware_config(self, revision_id: str, sha256: str) -> tuple[dict, bytes]:
        content = await self.content(revision_id, sha256)
        try:
            return parsed_hardware_config(content, revision_id), content
        except HardwareConfigError as exc:
            raise ConfigUnavailable("CONFIG_INVALID", str(exc), revision_id=revision_id) from exc

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
