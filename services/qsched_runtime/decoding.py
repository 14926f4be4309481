"""Requests are decoded after the caller is authenticated, and a request that does not parse
is refused with INVALID_ARGUMENT in one rate-limited log line.

gRPC normally decodes a request before any interceptor sees it, so garbage bytes from an
unauthenticated peer reached the protobuf parser, came back as `UNKNOWN: DecodeError` and logged
a traceback per call. This interceptor, the innermost one, takes the decoding over: the server
hands the handlers raw bytes, the outer interceptors (tracing, authentication) run first, and
only then are the bytes parsed. Only unary requests are handled this way; the bidi streams
(reflection, the executor's run queue) decode each message as gRPC does."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)


class _RateLimitedLog:
    """At most one line per `every_s`; the lines in between are counted, not lost."""

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._every_s, self._clock = every_s, clock
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (and %d more since the last line)"
            args = (*args, self._suppressed)
        self._suppressed = 0
        self._next = now + self._every_s
        log.warning(message, *args)


class DecodeAfterAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._undecodable = _RateLimitedLog()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        method = handler_call_details.method
        undecodable = self._undecodable

        async def parsed(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                return decode(raw)
            except (DecodeError, RecursionError, ValueError) as exc:
                peer = context.peer() if hasattr(context, "peer") else "?"
                undecodable.warning("refused an undecodable %s request from %s: %s", method, peer, exc)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid {method.rsplit('/', 1)[-1]} message",
                )
                raise  # unreachable: abort raises

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await inner(await parsed(raw, context), context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, None, handler.response_serializer)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                request = await parsed(raw, context)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(unary_stream, None, handler.response_serializer)
        return handler
