"""The tracing interceptor: each call runs in a server span that continues the caller's trace (W3C
`traceparent` in the call's metadata). Installed only when tracing is on, ahead of authentication, so a
refused call is traced too; spans are per RPC (per request message on the streams of PER_MESSAGE), and
carry the request's batch and chunk ids where it names them (never payment data).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any

import grpc

from gpo_kernel import tracing
from gpo_server.api.errors import Context
from gpo_server.api.interceptor import HandlerInterceptor, around_each_call

# Streams shared by many chunks' work: a span per stream would join no chunk's trace, so the service
# makes one per request message, parented by the traceparent the message carries.
PER_MESSAGE = frozenset({"/gpo.v1.RailService/ReportResults"})


class TracingInterceptor(HandlerInterceptor):
    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if method.startswith("/grpc."):
            return handler  # health checks and reflection: no spans
        if method in PER_MESSAGE:
            return handler  # one span per request message instead, in the chunk's trace (rail_service.py)
        return _traced(handler, method)


def _attributes(method: str, request: Any) -> dict[str, str | int]:
    service, _, name = method.lstrip("/").partition("/")
    attributes: dict[str, str | int] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    # Ids only: the batch's resource name and the chunk's id, where a (unary) request names them.
    for field, attribute in (("batch", "gpo.batch"), ("name", "gpo.batch"), ("chunk_id", "gpo.chunk_id")):
        value = getattr(request, field, None)
        if isinstance(value, str) and value and (field != "name" or value.startswith("batches/")):
            attributes[attribute] = value
    return attributes


def _parent(context: Context) -> Any:
    return tracing.parent_from(dict(context.invocation_metadata() or ()))


def _traced(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    name = method.lstrip("/")

    @asynccontextmanager
    async def span(request: Any, context: Context) -> AsyncIterator[None]:
        attributes = _attributes(method, request)
        with tracing.span(name, attributes, parent=_parent(context), kind=tracing.SpanKind.SERVER):
            yield

    return around_each_call(handler, span)


def message_span(method: str, request: Any, traceparent: str) -> AbstractContextManager[None]:
    """The server span of one request message of a PER_MESSAGE stream, child of the `traceparent` it
    carries (the sidecar's span for that chunk); nothing when tracing is off."""
    if not tracing.enabled():
        return nullcontext()
    parent = tracing.parent_from({"traceparent": traceparent}) if traceparent else None
    return tracing.span(
        method.lstrip("/"), _attributes(method, request), parent=parent, kind=tracing.SpanKind.SERVER
    )
