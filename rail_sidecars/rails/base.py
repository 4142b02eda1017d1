"""The Rail interface: every rail is the same small set of hooks: execute and look_up, plus the optional
start, late_results and close.

A rail must treat the idempotency key as the identity of a payment. GPO sends the same key on every
attempt and, before executing a payment that may have been sent before, asks look_up whether the rail
already knows the key; the rail answers from its own records.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # definite: the rail refused and will keep refusing this key
    REVERSED = "reversed"  # late only: reported SUCCEEDED before, then returned


@dataclass(frozen=True, slots=True)
class RailPayment:
    idempotency_key: str
    reference_id: str
    payer_fa: str
    payee_fa: str
    amount: str  # exact decimal string, e.g. "125.50"
    currency_code: str
    payee_name: str = ""
    note: str = ""
    purpose: str = ""
    # Where the payment belongs in GPO; a rail that reports outcomes late (see late_results) keeps them.
    batch: str = ""
    payment_number: int = 0


@dataclass(frozen=True, slots=True)
class RailResult:
    idempotency_key: str
    outcome: Outcome
    reason_code: str = ""
    reason_message: str = ""
    rail_reference: str = ""
    # Needed only on late results, which arrive outside any chunk: the RailPayment's batch and number.
    batch: str = ""
    payment_number: int = 0
    # From look_up, where the rail can tell: how many times it executed the key (0: not known). More
    # than 1 is a double payment, which GPO flags.
    executions: int = 0

    def __post_init__(self) -> None:
        # GPO refuses a report whose texts pass their bounds (rail.proto, PaymentResult), which would hold
        # the chunk for good: a rail's long error text is cut here, once for every rail.
        for field, most in (("reason_code", 128), ("reason_message", 1024), ("rail_reference", 256)):
            if len(value := getattr(self, field)) > most:
                object.__setattr__(self, field, value[:most])


class RetryableRailError(Exception):
    """The rail could not take the call now (timeout, 5xx, throttled); nothing was executed by it."""


class Rail(abc.ABC):
    name: str

    @abc.abstractmethod
    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        """Executes a chunk and returns one result per payment (any order)."""

    @abc.abstractmethod
    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        """Results the rail holds for these keys; a key the rail never executed is absent."""

    def late_results(self) -> AsyncIterator[RailResult]:
        """Outcomes the rail learns after execute() returned (e.g. a bank's return of a paid transfer),
        each carrying batch and payment_number. Most rails have none."""
        return _no_results()

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Opens what the rail needs before the first chunk, e.g. a callback listener."""

    async def close(self) -> None:  # noqa: B027 (optional hook; most rails hold nothing to release)
        """Releases connections and files."""


async def _no_results() -> AsyncIterator[RailResult]:
    return
    yield  # an async generator that yields nothing
