"""OpenTelemetry traces: a span per HTTP request, per model turn and per hosted tool call, with the GenAI
semantic-convention attributes; the upstream gets the model turn's ``traceparent``.

Off unless an OTLP endpoint is configured (the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; OTLP over HTTP/protobuf). Off, the SDK is never imported and every
hook here is one check of a module global.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("respd.tracing")

# The W3C traceparent of the model turn being requested, for the upstream request's headers (set by the
# instrumented backend around the call that sends it; read by the Chat Completions backend).
TRACEPARENT: ContextVar[str | None] = ContextVar("respd_traceparent", default=None)
# GenAI attributes of the response being run (id, conversation), for its model turns' spans.
RESPONSE_ATTRIBUTES: ContextVar[dict[str, str] | None] = ContextVar("respd_response_attributes", default=None)

_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def tracer() -> Tracer | None:
    """The tracer, or None when traces are off."""
    return _tracer


def install(provider: TracerProvider | None) -> None:
    """Trace through ``provider`` (None: off). Not the global provider: respd's spans are its own."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("respd") if provider is not None else None


def otlp_provider() -> TracerProvider:
    """A provider exporting in batches to the OTLP endpoint of the ``OTEL_*`` variables (service ``respd``
    unless ``OTEL_SERVICE_NAME`` says otherwise)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "respd"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def shutdown() -> None:
    """Export what is buffered (at process exit)."""
    if _provider is not None:
        _provider.shutdown()


def server_span(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[Span, Any]:
    """Start the span of an HTTP request (a child of the caller's ``traceparent``, if sent) and make it
    current; returns the span and the token for :func:`end_server_span`."""
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert _tracer is not None
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
    parent = TraceContextTextMapPropagator().extract(carrier) if carrier else None
    span = _tracer.start_span(f"{method} {path}", context=parent, kind=trace.SpanKind.SERVER,
                              attributes={"http.request.method": method, "url.path": path})  # fmt: skip
    return span, context.attach(trace.set_span_in_context(span))


def end_server_span(span: Span, token: Any, method: str, route: str | None, status: int) -> None:
    from opentelemetry import context, trace

    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()
    context.detach(token)


def annotate_response(response_id: str, model: str, conversation_id: str | None) -> None:
    """Name the response being run on the current span, and for its model turns' spans."""
    if _tracer is None:
        return
    from opentelemetry import trace

    attributes = {"gen_ai.response.id": response_id, "gen_ai.request.model": model}
    if conversation_id:
        attributes["gen_ai.conversation.id"] = conversation_id
    RESPONSE_ATTRIBUTES.set(attributes)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def model_span(model: str, system: str) -> tuple[Span, str]:
    """Start the span of one model turn (a child of the current span) and its ``traceparent`` header."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    assert _tracer is not None
    attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "gen_ai.provider.name": system,
                  **(RESPONSE_ATTRIBUTES.get() or {})}  # fmt: skip
    attributes["gen_ai.request.model"] = model
    span = _tracer.start_span(f"chat {model}", kind=trace.SpanKind.CLIENT, attributes=attributes)
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return span, carrier.get("traceparent", "")


def fail_span(span: Span, error_type: str, message: str) -> None:
    from opentelemetry import trace

    span.set_attribute("error.type", error_type)
    span.set_status(trace.Status(trace.StatusCode.ERROR, message))


@contextlib.contextmanager
def tool_span(tool: str, call_id: str | None = None) -> Iterator[Span | None]:
    """The span of one hosted tool call (``execute_tool {tool}``), current while the call runs; None when
    traces are off."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace

    attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                  **(RESPONSE_ATTRIBUTES.get() or {})}  # fmt: skip
    if call_id:
        attributes["gen_ai.tool.call.id"] = call_id
    with _tracer.start_as_current_span(f"execute_tool {tool}", kind=trace.SpanKind.INTERNAL,
                                       attributes=attributes) as span:  # fmt: skip
        yield span
