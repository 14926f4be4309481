"""OpenTelemetry without gRPC: the process-wide tracer, and trace context as a `traceparent`
string (stored with a run so its spans join the submitting call's trace).

The exporter is chosen by configuration: "none", "console", "otlp" (needs
opentelemetry-exporter-otlp) or "memory" (tests). The gRPC interceptors that carry the
context across calls are in `qsched_runtime.tracing`."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from qsched_core.config import EXPORTERS

_TRACER_NAME = "qsched"


def configure_tracing(service_name: str, exporter: str = "none") -> SpanExporter | None:
    """Install the process-wide tracer provider. Returns the exporter (the
    in-memory one is what tests read spans from)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown trace exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    provider = TracerProvider(resource=Resource.create({"service.name": f"qsched-{service_name}"}))
    span_exporter: SpanExporter | None = None
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:  # optional dependency
            raise RuntimeError(
                "the otlp trace exporter needs `pip install opentelemetry-exporter-otlp`"
            ) from exc
        span_exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    elif exporter == "memory":
        span_exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    return span_exporter


_tracer: tuple[trace.TracerProvider, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """qsched's tracer of the installed provider (kept: `get_tracer` costs ~50 us a call, and the
    executor asks once per run)."""
    global _tracer
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, trace.get_tracer(_TRACER_NAME, tracer_provider=provider))
    return _tracer[1]


def current_traceparent() -> str:
    """The active span's context as a traceparent header value ("" when none)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context:
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


def attributes_for_job(job_id: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"qsched.job_id": job_id, **(extra or {})}
