"""The Rail interface: every rail is the same small set of hooks: execute and look_up, plus the optional
start, late_results and close, and the optional funds hooks block_funds and release_funds (a rail with
`funds_control` in the rails file; docs/TREASURY.md).

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


class FundsOutcome(StrEnum):
    BLOCKED = "blocked"  # the amount is held under the block id (now, or by an earlier request)
    INSUFFICIENT = "insufficient"  # the payer's available balance is below the amount: nothing held
    RELEASED = "released"  # released, or never placed (and never to be placed under this id)


@dataclass(frozen=True, slots=True)
class FundsRequest:
    """A batch's funds block with the sponsor bank: GPO's request, by the block's id."""

    block_id: str  # the bank's idempotency key: at most one block per id, ever
    batch: str  # "batches/{uuid}": that batch's payments are debited against the block
    payer_fa: str
    currency_code: str
    amount: str  # exact decimal string


@dataclass(frozen=True, slots=True)
class FundsResult:
    block_id: str
    outcome: FundsOutcome
    message: str = ""  # the bank's own words, e.g. the balance it found
    bank_reference: str = ""


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

    async def block_funds(self, request: FundsRequest) -> FundsResult:
        """Optional funds hook: checks the payer's balance and blocks request.amount under request.block_id
        with the sponsor bank. A repeated request for a block already held answers BLOCKED and blocks
        nothing more; a request for a block released before answers RELEASED. Raise (any exception) when
        the bank cannot answer now: GPO asks again later. Only rails with `funds_control` need it."""
        raise NotImplementedError(f"rail {self.name!r} has no funds control")

    async def release_funds(self, request: FundsRequest) -> FundsResult:
        """Optional funds hook: releases what is left of the block (its batch was cancelled) and answers
        RELEASED, also for a block never placed, which the bank must then refuse to place later."""
        raise NotImplementedError(f"rail {self.name!r} has no funds control")

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Opens what the rail needs before the first chunk, e.g. a callback listener."""

    async def close(self) -> None:  # noqa: B027 (optional hook; most rails hold nothing to release)
        """Releases connections and files."""


def has_funds_hooks(rail: Rail) -> bool:
    """Whether the rail (or the rail a wrapper holds in `inner`) implements block_funds and release_funds."""
    rail = getattr(rail, "inner", rail)
    kind = type(rail)
    return kind.block_funds is not Rail.block_funds and kind.release_funds is not Rail.release_funds


async def _no_results() -> AsyncIterator[RailResult]:
    return
    yield  # an async generator that yields nothing
