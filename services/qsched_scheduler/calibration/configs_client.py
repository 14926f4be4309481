"""The calibration configs port over gRPC (qsched.configs.v1.ConfigService): the definitions are
the main revision of the `calibrations` config type; a passing fit is pushed with PushToMain onto
the current main hardware_config (the etag guards against a push in between: read again, retry).
Calls carry the calibrator service principal's token, so PushToMain (calibrator role) records it
as who changed main, with the job as the new revision's first_job_id."""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc
from qsched.wire import error_info
from qsched_runtime.errors import peer_error
from qsched_runtime.security import PeerCredentials
from qsched_scheduler.calibration.configs_port import (
    HARDWARE_CONFIG,
    DefinitionsFile,
    Pushed,
    apply_updates,
)
from qsched_scheduler.calibration.definitions import CONFIG_TYPE
from qsched_scheduler.config_port import ConfigsUnavailable, PinRefused

TIMEOUT_S = 10.0
PUSH_ATTEMPTS = 3  # a push racing another one reads main again


class GrpcCalibrationConfigs:
    def __init__(self, address: str, credentials: PeerCredentials | None = None):
        self._channel = (credentials or PeerCredentials()).channel(address)
        self._stub = pb_grpc.ConfigServiceStub(self._channel)

    async def definitions(self) -> DefinitionsFile | None:
        try:
            main = await self._stub.GetMain(
                pb.GetMainRequest(config_type=CONFIG_TYPE, include_content=True), timeout=TIMEOUT_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                return None  # no such type or no main yet: nothing is defined
            raise peer_error(error, ConfigsUnavailable, PinRefused) from error
        return DefinitionsFile(main.revision.revision_id, main.revision.content)

    async def push_updates(self, updates: Mapping[str, float], job_id: str, calibration: str) -> Pushed:
        for attempt in range(PUSH_ATTEMPTS):
            try:
                main = await self._stub.GetMain(
                    pb.GetMainRequest(config_type=HARDWARE_CONFIG, include_content=True), timeout=TIMEOUT_S
                )
                response = await self._stub.PushToMain(
                    pb.PushToMainRequest(
                        config_type=HARDWARE_CONFIG,
                        content=apply_updates(main.revision.content, updates),
                        content_type=main.revision.content_type,
                        original_filename=main.revision.original_filename or "hardware_config.yml",
                        creator=f"calibration {calibration}",
                        etag=main.etag,
                        job_id=job_id,
                    ),
                    timeout=TIMEOUT_S,
                )
            except grpc.aio.AioRpcError as error:
                if error_info(error).reason == "ETAG_MISMATCH" and attempt + 1 < PUSH_ATTEMPTS:
                    continue
                raise peer_error(error, ConfigsUnavailable, PinRefused) from error
            return Pushed(response.revision.revision_id, response.changed)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._channel.close()
