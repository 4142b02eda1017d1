"""The authentication interceptor: every call passes it before its handler, so no handler can forget to
authenticate, and every refused call ends the same way (UNAUTHENTICATED or PERMISSION_DENIED with its
ErrorInfo), streaming calls included.

Each service names the kind of caller it serves (see api/auth.py); a service the table does not name is
refused, so a new service is closed until someone decides who may call it.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import grpc

from gpo_server.api.auth import Authenticator, Caller, permission_denied
from gpo_server.api.errors import ApiError, Context, abort


class Access(enum.Enum):
    PUBLIC = "public"  # health checks, reflection
    PROGRAMS = "programs"  # program callers and operators; never a sidecar
    SIDECARS = "sidecars"  # rail sidecars only
    OWN = "own"  # the service authenticates in its own protocol's terms (G2P Connect's error bodies)


SERVICES: Mapping[str, Access] = {
    "gpo.v1.DisbursementService": Access.PROGRAMS,
    "gpo.v1.RailService": Access.SIDECARS,
    "gpo.v1.G2pConnectService": Access.OWN,
    "grpc.health.v1.Health": Access.PUBLIC,
    "grpc.reflection.v1alpha.ServerReflection": Access.PUBLIC,
    "grpc.reflection.v1.ServerReflection": Access.PUBLIC,
}


def admits(access: Access, caller: Caller) -> ApiError | None:
    """Why `caller` may not call a service of `access`, or None."""
    if access is Access.PROGRAMS and caller.is_sidecar:
        return permission_denied("a rail sidecar may call RailService only", "SIDECAR_NOT_ALLOWED")
    if access is Access.SIDECARS and not caller.is_sidecar:
        return permission_denied("only rail sidecars may call RailService", "NOT_A_SIDECAR")
    if access is Access.OWN and caller.is_sidecar:
        return permission_denied("a rail sidecar may call RailService only", "SIDECAR_NOT_ALLOWED")
    return None


class HandlerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """An interceptor that gives the handler of each known method to `wrap`, which returns the handler to
    serve (the same one, or one around it). Unknown methods pass through: gRPC answers UNIMPLEMENTED."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        return self.wrap(handler, str(details.method))

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        raise NotImplementedError


def service_of(method: str) -> str:
    """The service a method's full name ("/gpo.v1.RailService/ClaimWorkChunk") belongs to."""
    return method.lstrip("/").split("/", 1)[0]


class AuthInterceptor(HandlerInterceptor):
    def __init__(self, auth: Authenticator, services: Mapping[str, Access] = SERVICES) -> None:
        self.auth = auth
        self.services = services

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        access = self.services.get(service_of(method))
        if access is Access.PUBLIC:
            return handler
        return _guarded(handler, lambda context: self._admit(context, access))

    async def _admit(self, context: Context, access: Access | None) -> None:
        """Authenticates the call and checks its kind, or ends it with the reason."""
        if access is None:
            await abort(context, permission_denied("this service takes no calls", "SERVICE_CLOSED"))
        if access is Access.OWN:
            # Refusals there are the protocol's own; a token that is present is still checked for kind.
            try:
                caller = self.auth.authenticate(context)
            except ApiError:
                return  # the service answers in its terms (e.g. G2P Connect's err.request.unauthorized)
        else:
            try:
                caller = self.auth.authenticate(context)
            except ApiError as error:
                await abort(context, error)
        assert access is not None
        if (refusal := admits(access, caller)) is not None:
            await abort(context, refusal)
        self.auth.admit(context, caller)


def behavior_of(handler: grpc.RpcMethodHandler) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A handler's behaviour, and a function that makes a handler of the same kind and (de)serializers
    around another behaviour."""
    if handler.request_streaming and handler.response_streaming:
        inner, make = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        inner, make = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        inner, make = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    else:
        inner, make = handler.unary_unary, grpc.unary_unary_rpc_method_handler

    def rebuilt(behavior: Callable[..., Any]) -> grpc.RpcMethodHandler:
        return make(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    return inner, rebuilt


def around_each_call(
    handler: grpc.RpcMethodHandler, around: Callable[[Any, Context], AbstractAsyncContextManager[object]]
) -> grpc.RpcMethodHandler:
    """The same handler, each call run inside `around(request, context)` (admission, a trace span)."""
    inner, make = behavior_of(handler)

    if handler.response_streaming:

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            async with around(request, context):
                result = inner(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:
                    await result  # a handler that writes with context.write()

        behavior: Callable[..., Any] = streaming
    else:

        async def unary(request: Any, context: Context) -> Any:
            async with around(request, context):
                return await inner(request, context)

        behavior = unary
    return make(behavior)


def _guarded(
    handler: grpc.RpcMethodHandler, admit: Callable[[Context], Awaitable[None]]
) -> grpc.RpcMethodHandler:
    """The same handler, admitting the call first."""

    @asynccontextmanager
    async def admitted(request: Any, context: Context) -> AsyncIterator[None]:
        await admit(context)
        yield

    return around_each_call(handler, admitted)
