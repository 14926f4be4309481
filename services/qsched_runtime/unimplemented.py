"""Services whose issue has not landed answer every RPC with UNIMPLEMENTED and an
ErrorInfo saying so; nothing pretends to succeed."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from qsched_runtime.errors import DomainError, abort
from qsched_runtime.server import Registration


class NotImplementedYet(DomainError):
    code = "UNIMPLEMENTED"


def unimplemented_registration(
    descriptor: ServiceDescriptor, servicer_base: type, add_fn: Any
) -> Registration:
    domain = descriptor.file.package

    def make(method_name: str) -> Any:
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            error = NotImplementedYet(
                "NOT_IMPLEMENTED_YET",
                f"{descriptor.full_name}/{method_name} is not implemented in this qsched release",
                method=method_name,
            )
            await abort(context, error, domain)

        return handler

    servicer_cls = type(
        f"Unimplemented{descriptor.name}",
        (servicer_base,),
        {method.name: make(method.name) for method in descriptor.methods},
    )
    return Registration(descriptor.full_name, lambda server: add_fn(servicer_cls(), server))
