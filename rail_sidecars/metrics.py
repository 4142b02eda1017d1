"""Prometheus metrics of a rail sidecar: every call to the rail, timed, with its errors by reason and the
outcomes it returned. The runner wraps its rail in MeteredRail; counters move once per call by the call's
counts, never once per payment."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from typing import TypeVar

from prometheus_client import Counter, Histogram

from rail_sidecars.rails.base import (
    FundsRequest,
    FundsResult,
    Rail,
    RailPayment,
    RailResult,
    RetryableRailError,
)

_T = TypeVar("_T")

# Rails answer in milliseconds (a simulator) to minutes (a bank file's acknowledgement).
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

RAIL_CALL_SECONDS = Histogram(
    "gpo_sidecar_rail_call_duration_seconds",
    "Duration of calls to the rail, by operation (execute, look_up), whatever their end.",
    ["rail", "operation"],
    buckets=_CALL_BUCKETS,
)
RAIL_CALL_ERRORS = Counter(
    "gpo_sidecar_rail_call_errors",
    "Rail calls that ended without an answer, by reason: retryable (the rail refused the call for now),"
    " abandoned (timed out or cancelled by the runner), or the exception's type.",
    ["rail", "operation", "reason"],
)
RAIL_PAYMENTS = Counter(
    "gpo_sidecar_rail_payments", "Payments sent to the rail, by operation.", ["rail", "operation"]
)
OUTCOMES = Counter(
    "gpo_sidecar_outcomes",
    "Outcomes the rail returned, by outcome and reason code (empty for successes).",
    ["rail", "outcome", "reason"],
)


class MeteredRail(Rail):
    """A Rail that times and counts every call of the rail it wraps; anything else is the wrapped rail's."""

    def __init__(self, rail: Rail, rail_name: str) -> None:
        self.inner = rail
        self.name = getattr(rail, "name", rail_name)
        self._rail = rail_name
        # The usual reasons read 0 from the start, so that rate() and the alert rules see them.
        for operation in ("execute", "look_up"):
            for reason in ("retryable", "abandoned"):
                RAIL_CALL_ERRORS.labels(rail_name, operation, reason)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        results = await self._timed("execute", len(payments), self.inner.execute(payments))
        self._count(results)
        return results

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        found = await self._timed("look_up", len(idempotency_keys), self.inner.look_up(idempotency_keys))
        self._count(found.values())
        return found

    def late_results(self) -> AsyncIterator[RailResult]:
        return self.inner.late_results()

    async def block_funds(self, request: FundsRequest) -> FundsResult:
        return await self.inner.block_funds(request)

    async def release_funds(self, request: FundsRequest) -> FundsResult:
        return await self.inner.release_funds(request)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def _timed(self, operation: str, count: int, call: Awaitable[_T]) -> _T:
        RAIL_PAYMENTS.labels(self._rail, operation).inc(count)
        started = time.perf_counter()
        reason = ""
        try:
            return await call
        except RetryableRailError:
            reason = "retryable"
            raise
        except (asyncio.CancelledError, TimeoutError):
            reason = "abandoned"
            raise
        except Exception as exc:
            reason = type(exc).__name__
            raise
        finally:
            RAIL_CALL_SECONDS.labels(self._rail, operation).observe(time.perf_counter() - started)
            if reason:
                RAIL_CALL_ERRORS.labels(self._rail, operation, reason).inc()

    def _count(self, results: Iterable[RailResult]) -> None:
        tally = Tally((r.outcome.value, r.reason_code) for r in results)
        for (outcome, reason), n in tally.items():
            OUTCOMES.labels(self._rail, outcome, reason).inc(n)
