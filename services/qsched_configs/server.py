"""Builds the configs service. Not implemented yet: every RPC answers UNIMPLEMENTED."""

from __future__ import annotations

from qsched.api.configs.v1 import configs_pb2 as pb
from qsched.api.configs.v1 import configs_pb2_grpc as pb_grpc
from qsched_runtime.config import ServiceConfig
from qsched_runtime.service import ServiceHandle
from qsched_runtime.unimplemented import unimplemented_registration


async def build(config: ServiceConfig) -> ServiceHandle:
    descriptor = pb.DESCRIPTOR.services_by_name["ConfigService"]
    return ServiceHandle(
        [
            unimplemented_registration(
                descriptor, pb_grpc.ConfigServiceServicer, pb_grpc.add_ConfigServiceServicer_to_server
            )
        ]
    )
