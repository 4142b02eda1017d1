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
