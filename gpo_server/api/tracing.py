"""The tracing interceptor: each call runs in a server span that continues the caller's trace (W3C
`traceparent` in the call's metadata). Installed only when tracing is on, ahead of authentication, so a
refused call is traced too; spans are per RPC, and carry the request's batch and chunk ids where it names
them (never payment data).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc

from gpo_kernel import tracing
from gpo_server.api.errors import Context
from gpo_server.api.interceptor import around_each_call


class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or str(details.method).startswith("/grpc."):
            return handler  # unknown methods, health checks and reflection: no spans
        return _traced(handler, str(details.method))


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
