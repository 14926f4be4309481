"""Unary calls of one qsched gRPC service, by method name: `calls("GetJob", request)`.

The one place the SDK turns a failed call into a typed `QschedError` (naming the address it
called). It needs only the service's message module, not the generated `*_pb2_grpc` stubs: a
method's path is the service's full name and the method, its response is `<Method>Response` (every
qsched RPC has its own request and response messages). That keeps the CLI's everyday commands from
importing the stub modules at start-up."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import grpc

from qsched.errors import from_rpc_error


class Calls:
    def __init__(
        self, channel: grpc.Channel, service: str, messages: ModuleType, address: str, timeout: float
    ):
        """`service` is the service's name in `messages` (e.g. "JobService" in jobs_pb2)."""
        self.channel = channel
        self.address = address
        self.timeout = timeout
        self._messages = messages
        self._path = f"/{messages.DESCRIPTOR.services_by_name[service].full_name}/"
        self._methods: dict[str, Any] = {}

    def __call__(self, method: str, request: Any, timeout: float | None = None) -> Any:
        call = self._methods.get(method)
        if call is None:
            response = getattr(self._messages, f"{method}Response")
            call = self._methods[method] = self.channel.unary_unary(
                self._path + method,
                request_serializer=_serialize,
                response_deserializer=response.FromString,
            )
        try:
            return call(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error, self.address) from None


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()
