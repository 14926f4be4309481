"""OpenTelemetry across gRPC: interceptors carry W3C trace context in the call metadata, so a
job's spans in the scheduler and in the executor or gateway form one trace. The tracer and
its configuration are in `qsched_core.tracing`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from qsched_core.tracing import tracer


def _metadata_carrier(metadata: Any) -> dict[str, str]:
    return {key: value for key, value in (metadata or ()) if isinstance(value, str)}


# -- server side ---------------------------------------------------------------------------------------
class ServerTracingInterceptor(grpc.aio.ServerInterceptor):
    """One SERVER span per RPC, parented on the caller's trace context."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        parent = propagate.extract(_metadata_carrier(handler_call_details.invocation_metadata))
        name = method.lstrip("/")
        span_attrs = {"rpc.system": "grpc", "rpc.method": name}

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                with tracer().start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
                    span.set_attributes(span_attrs)
                    try:
                        return await inner(request, context)
                    finally:
                        _record_code(span, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                # The span is current only while the handler produces an item: a stream that the
                # client abandons is closed from another context, where a span attached across the
                # `yield` could not be detached.
                span = tracer().start_span(name, context=parent, kind=SpanKind.SERVER)
                span.set_attributes(span_attrs)
                in_span = trace.set_span_in_context(span, parent)
                items = inner_stream(request, context).__aiter__()
                try:
                    while True:
                        token = otel_context.attach(in_span)
                        try:
                            item = await items.__anext__()
                        except StopAsyncIteration:
                            break
                        finally:
                            otel_context.detach(token)
                        yield item
                finally:
                    close = getattr(items, "aclose", None)
                    if close is not None:
                        await close()
                    _record_code(span, context)
                    span.end()

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # client- and bidi-streaming RPCs are not used by qsched


def _record_code(span: trace.Span, context: grpc.aio.ServicerContext) -> None:
    try:
        code = context.code()
    except Exception:  # the context API differs between grpc versions
        code = None
    if code not in (None, grpc.StatusCode.OK, 0):
        span.set_status(Status(StatusCode.ERROR, str(code)))


# -- client side ---------------------------------------------------------------------------------------
def _with_trace_metadata(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata = list(details.metadata or ())
    metadata.extend(carrier.items())
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _UnaryUnaryTracing(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[override]
        with tracer().start_as_current_span(_method_name(client_call_details), kind=SpanKind.CLIENT):
            return await continuation(_with_trace_metadata(client_call_details), request)


class _UnaryStreamTracing(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[override]
        span = tracer().start_span(_method_name(client_call_details), kind=SpanKind.CLIENT)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            call = await continuation(_with_trace_metadata(client_call_details), request)
        finally:
            otel_context.detach(token)
        call.add_done_callback(lambda _call: span.end())
        return call


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """A CLIENT span per call, with its context sent along in the metadata. (An aio
    channel files each interceptor under one call type, hence one class per type.)"""
    return [_UnaryUnaryTracing(), _UnaryStreamTracing()]


def _method_name(details: grpc.aio.ClientCallDetails) -> str:
    method = details.method
    return (method.decode() if isinstance(method, bytes) else method).lstrip("/")
