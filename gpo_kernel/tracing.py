"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

One trace follows an upload's work: the gateway's request, the server's RPCs, each work chunk's publish
(its context stored with the outbox row, then sent as AMQP headers) and the sidecar's claim, execute and
report of that chunk, with the rails' HTTP calls carrying `traceparent`. Spans are per RPC and per chunk,
never per payment, and carry batch and chunk ids only (never an account number or a payee's data).

Settings (read once by `configure`): `GPO_OTLP_ENDPOINT` (an OTLP/HTTP base URL, e.g.
http://collector:4318), or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
/ `OTEL_TRACES_EXPORTER=otlp`; `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn it off. When it
is off no tracer provider is installed and every helper here returns at its first test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["SpanKind"]

# Only these two headers cross process boundaries (W3C Trace Context).
TRACE_HEADERS = ("traceparent", "tracestate")

_PROPAGATOR = TraceContextTextMapPropagator()
_enabled = False
_provider: Any = None


def endpoint_from(environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP traces URL the settings ask for, or None when tracing is off."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if url := environ.get("GPO_OTLP_ENDPOINT", "").strip():
        return url.rstrip("/") + "/v1/traces"
    if url := environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
        return url
    if url := environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return url.rstrip("/") + "/v1/traces"
    if exporter == "otlp":
        return "http://localhost:4318/v1/traces"  # the OTLP/HTTP default
    return None


def configure(service_name: str, environ: Mapping[str, str]) -> bool:
    """Installs a tracer provider exporting over OTLP/HTTP when the settings ask for it; True if so."""
    global _enabled, _provider
    url = endpoint_from(environ)
    if url is None or _enabled:
        return _enabled
    # Imported only when on: the SDK and exporter cost nothing to a process that does not trace.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
    _provider = provider
    _enabled = True
    return True


def shutdown() -> None:
    """Exports what is still buffered; call on the way out."""
    if _provider is not None:
        _provider.shutdown()


def enabled() -> bool:
    return _enabled


def tracer() -> trace.Tracer:
    return trace.get_tracer("gpo")


def carrier() -> dict[str, str]:
    """The current span's context as W3C headers; empty when tracing is off or no span is current."""
    if not _enabled:
        return {}
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers)
    return headers


def traceparent() -> str | None:
    """The current span's `traceparent`, for storing with work that another process picks up later."""
    return carrier().get("traceparent")


def parent_from(headers: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The context that W3C headers carry (str or bytes values), or None."""
    if not _enabled or not headers:
        return None
    found = {}
    for name in TRACE_HEADERS:
        value = headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str):
            found[name] = value
    return _PROPAGATOR.extract(found) if found else None


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, str | int] | None = None,
    *,
    parent: otel_context.Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[None]:
    """A span made current for the block, child of `parent` (else of the current span); nothing when off."""
    if not _enabled:
        yield
        return
    with tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attributes):
        yield


def start_span(
    name: str,
    attributes: Mapping[str, str | int],
    *,
    parent: otel_context.Context | None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> tuple[trace.Span, dict[str, str]]:
    """A span that is not made current (the caller ends it), child of `parent` or a new trace's root, and
    the W3C headers that carry it to another process. Only for use when `enabled()`."""
    started = tracer().start_span(
        name, context=parent or otel_context.Context(), kind=kind, attributes=attributes
    )
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=trace.set_span_in_context(started))
    return started, headers


async def _send_traceparent(request: httpx.Request) -> None:
    request.headers.update(carrier())


def httpx_hooks() -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
    """Event hooks for a rail's httpx.AsyncClient: each request carries the current span's `traceparent`
    (the sidecar's execute span), so the rail's own traces join; no span per request."""
    return {"request": [_send_traceparent]} if _enabled else {}
