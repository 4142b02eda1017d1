"""AIP-193 errors: google.rpc.Status with ErrorInfo (domain gpo.dev) and BadRequest field violations."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc
from asyncpg.exceptions import TargetServerAttributeNotMatched
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)
R = TypeVar("R")
DOMAIN = "gpo.dev"

# grpcio ships no type stubs, so a servicer context is Any to mypy.
Context: TypeAlias = Any


class ApiError(Exception):
    """Raised anywhere below a handler; the handler turns it into a rich gRPC status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        reason: str,
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations)

    def to_status(self) -> grpc.Status:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        details = [_pack(info)]
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
            details.append(_pack(bad))
        status = status_pb2.Status(code=_CODES[self.code], message=self.message, details=details)
        return rpc_status.to_status(status)


def invalid_argument(message: str, reason: str, violations: Sequence[tuple[str, str]] = ()) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, reason, violations=violations)


def not_found(what: str, name: str) -> ApiError:
    return ApiError(
        grpc.StatusCode.NOT_FOUND,
        f"{what} {name!r} not found",
        f"{what.upper()}_NOT_FOUND",
        metadata={"name": name[:200]},
    )


async def abort(context: Context, error: ApiError) -> NoReturn:
    await context.abort_with_status(error.to_status())
    raise AssertionError("abort_with_status returned")  # it always raises


async def abort_internal(context: Context) -> NoReturn:
    """An unexpected failure: logged here in full, answered with a short INTERNAL status. The client
    never sees SQL, stack traces or payment data, and the status stays small enough for gRPC metadata.

    A database that is out of connections or unreachable is UNAVAILABLE instead: it passes, and the client
    should retry."""
    if _database_unavailable(sys.exc_info()[1]):
        log.warning("database unavailable in %s", getattr(context, "_rpc_name", "a handler"), exc_info=True)
        error = ApiError(
            grpc.StatusCode.UNAVAILABLE, "the database is busy or unreachable; retry", "DATABASE_UNAVAILABLE"
        )
    else:
        log.exception("unexpected error in %s", getattr(context, "_rpc_name", "a handler"))
        error = ApiError(
            grpc.StatusCode.INTERNAL, "internal error; the server log has the details", "INTERNAL"
        )
    await abort(context, error)


# SQLSTATEs of a server going away or not taking work yet, as in a restart or a failover: connection
# exceptions (class 08), shutdowns and a server still starting (57P01-57P03), a read-only standby (25006).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "25006")


def _database_unavailable(exc: BaseException | None) -> bool:
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        if exc.connection_invalidated or sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
    # No server answered, or none of a multi-host URL's is writable yet (target_session_attrs=read-write).
    while exc is not None:
        if isinstance(exc, ConnectionRefusedError | TargetServerAttributeNotMatched):
            return True
        exc = exc.__cause__
    return False


def handles_errors(
    handler: Callable[[Any, Any, Context], Awaitable[R]],
) -> Callable[[Any, Any, Context], Awaitable[R]]:
    """For unary handlers: an ApiError becomes its rich status, anything else a short INTERNAL."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: Context) -> R:
        try:
            return await handler(self, request, context)
        except ApiError as error:
            await abort(context, error)
        except Exception:
            await abort_internal(context)

    return wrapper


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


_CODES = {c: getattr(code_pb2, c.name) for c in grpc.StatusCode}
