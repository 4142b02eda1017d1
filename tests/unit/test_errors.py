"""Unexpected failures in handlers: a database out of connections is UNAVAILABLE (retry), anything else
a short INTERNAL that leaks nothing."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from sqlalchemy import exc as sa_exc

from gpo_server.api.errors import handles_errors


class Aborted(Exception):
    pass


class RecordingContext:
    """What a grpc.aio servicer context offers the error handling: abort_with_status."""

    def __init__(self) -> None:
        self.status: Any = None

    async def abort_with_status(self, status: Any) -> None:
        self.status = status
        raise Aborted


class ServerError(Exception):
    """What a driver raises for an error the server sent: it carries the SQLSTATE."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def refused_behind(wrapper: Exception) -> Exception:
    wrapper.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    return wrapper


class Service:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    @handles_errors
    async def Get(self, request: object, context: Any) -> object:
        raise self.failure


@pytest.mark.parametrize(
    ("failure", "code", "reason"),
    [
        (
            sa_exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
            grpc.StatusCode.UNAVAILABLE,
            b"DATABASE_UNAVAILABLE",
        ),
        (  # a failover: the old primary shutting down, the standby not promoted yet
            sa_exc.DBAPIError("SELECT 1", {}, ServerError("the database system is shutting down", "57P03")),
            grpc.StatusCode.UNAVAILABLE,
            b"DATABASE_UNAVAILABLE",
        ),
        (
            sa_exc.DBAPIError("UPDATE payments", {}, ServerError("read-only transaction", "25006")),
            grpc.StatusCode.UNAVAILABLE,
            b"DATABASE_UNAVAILABLE",
        ),
        (refused_behind(RuntimeError("connect")), grpc.StatusCode.UNAVAILABLE, b"DATABASE_UNAVAILABLE"),
        (
            sa_exc.DBAPIError("INSERT", {}, ServerError("duplicate key", "23505")),
            grpc.StatusCode.INTERNAL,
            b"INTERNAL",
        ),
        (RuntimeError("SELECT secret FROM payments"), grpc.StatusCode.INTERNAL, b"INTERNAL"),
    ],
)
async def test_unexpected_failures_become_short_statuses(
    failure: Exception, code: grpc.StatusCode, reason: bytes
) -> None:
    context = RecordingContext()
    with pytest.raises(Aborted):
        await Service(failure).Get(object(), context)
    assert context.status.code == code
    assert b"SELECT" not in context.status.details.encode()
    details = dict(context.status.trailing_metadata)["grpc-status-details-bin"]
    assert reason in details
