"""The tracing interceptor: each call runs in a server span that continues the caller's trace (W3C
`traceparent` in the call's metadata). Installed only when tracing is on, ahead of authentication, so a
refused call is traced too; spans are per RPC, and carry the request's batch and chunk ids where it names
them (never payment data).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from gpo_kernel import tracing
from gpo_server.api.errors import Context
from gpo_server.api.interceptor import behavior_of


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
    inner, make = behavior_of(handler)
    name = method.lstrip("/")
    server = tracing.SpanKind.SERVER

    if handler.response_streaming:

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            with tracing.span(name, _attributes(method, request), parent=_parent(context), kind=server):
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:
                    await result  # a handler that writes with context.write()

        behavior: Callable[..., Any] = streaming
    else:

        async def unary(request: Any, context: Context) -> Any:
            with tracing.span(name, _attributes(method, request), parent=_parent(context), kind=server):
                return await inner(request, context)

        behavior = unary
    return make(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
