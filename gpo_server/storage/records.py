"""What the Store's callers hand it and get back: batches, payments, work chunks, outcomes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from sqlalchemy import (
    Row,
)

from gpo_server.domain.states import (
    BatchState,
    PaymentStatus,
)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    uid: str
    program: str
    request_id: str
    state: BatchState
    payer_fa: str
    callback_uri: str
    schedule_time: dt.datetime | None
    expected_payment_count: int
    expected_total_hundredths: int | None
    payment_count: int
    received_total_hundredths: int
    last_chunk_sequence: int
    create_time: dt.datetime
    update_time: dt.datetime
    unfinished_count: int = 0
    cycle: str = ""  # the program's cycle the batch pays in (domain/cycles.py); "" for none
    uploader: str = ""  # the token subject that opened it (maker-checker: never its approver)
    required_approvals: int = 0  # approvals its program's policy required when its upload ended

    @classmethod
    def from_row(cls, row: Row[Any]) -> BatchRecord:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)} | {"state": BatchState(m["state"])})

    @property
    def upload_matches_declaration(self) -> bool:
        """True when the client declared nothing, or what arrived matches what it declared."""
        if self.expected_payment_count and self.payment_count != self.expected_payment_count:
            return False
        total = self.expected_total_hundredths
        return total is None or total == self.received_total_hundredths


@dataclass(frozen=True, slots=True)
class NewBatch:
    program: str
    request_id: str
    payer_fa: str
    callback_uri: str
    schedule_time: dt.datetime | None
    expected_payment_count: int
    expected_total_hundredths: int | None
    cycle: str = ""
    uploader: str = ""


class NewPayment(NamedTuple):
    """A payment row as intake writes it. A tuple, in COPY column order, so COPY takes it as it is."""

    number: int
    reference_id: str
    idempotency_key: str
    payer_fa: str
    payee_fa: str
    amount_hundredths: int | None
    currency_code: str
    payee_name: str
    note: str
    purpose: str
    schedule_time: dt.datetime | None
    metadata_json: str | None
    rail: str | None
    status: str
    reason_code: str
    reason_message: str


PAYMENT_COLUMNS = list(NewPayment._fields)


@dataclass(frozen=True, slots=True)
class NewWorkChunk:
    chunk_id: str
    rail: str
    payload: bytes
    not_before: dt.datetime | None
    trace_context: str | None = None  # the producing upload's traceparent, when tracing is on


@dataclass(frozen=True, slots=True)
class DeadLetterOutcome:
    redriven: int  # payments sent again in new work, with their keys
    exhausted: int  # payments left for an operator: re-driven the maximum number of times already


@dataclass(frozen=True, slots=True)
class PublishableChunk:
    id: int
    batch_id: int
    chunk_id: str
    rail: str
    payload: bytes
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class StatusTotal:
    status: PaymentStatus
    currency_code: str
    count: int
    amount_hundredths: int


@dataclass(frozen=True, slots=True)
class ResultUpdate:
    number: int
    status: PaymentStatus  # SUCCEEDED, FAILED or REVERSED
    reason_code: str
    reason_message: str
    rail_reference: str
    failure_definite: bool | None = None  # FAILED only: False when the rail was unreachable
    rail_executions: int = 0  # how many times the rail executed the key, when its look-up tells (0: unknown)


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    execute: set[int]
    verify: set[int]
    busy: set[int]
    lease_expire_time: dt.datetime
    retry_after: dt.timedelta
    lease_token: int = 0


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """What a work item needs of a stored payment."""

    number: int
    idempotency_key: str
    reference_id: str
    payer_fa: str
    payee_fa: str
    amount_hundredths: int
    currency_code: str
    payee_name: str
    note: str
    purpose: str
    rail: str

    @classmethod
    def from_row(cls, row: Row[Any], key: str | None = None) -> PaymentRow:
        m = row._mapping
        values = {f.name: m[f.name] for f in fields(cls)}
        if key is not None:
            values["idempotency_key"] = key
        return cls(**values)


# Builds the outbox work for (batch uid, payments, verify_only); supplied by gpo_server.work.
WorkBuilder = Callable[[str, Sequence[PaymentRow], bool], list["NewWorkChunk"]]
PublishDone = Callable[[Sequence[tuple["PublishableChunk", Sequence[int]]]], Awaitable[None]]


class ReferenceTaken(Exception):
    """A chunk's payment uses a reference_id the batch already holds (its unique index refused it)."""


class BeneficiaryTaken(Exception):
    """Payments of a chunk pay beneficiaries that other payments hold in the batch's cycle (by number)."""

    def __init__(self, numbers: set[int]) -> None:
        super().__init__(f"{len(numbers)} beneficiaries are held in the cycle already")
        self.numbers = numbers


class CycleRefused(Exception):
    """A batch (or a retry) its cycle refuses: a reason (the API's), a message and details to act on."""

    def __init__(self, reason: str, message: str, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.details = reason, message, dict(details or {})


class NothingToDo(Exception):
    """An operator's action on one payment whose status gives it nothing to do; nothing was recorded."""


class ForeignRail(Exception):
    """A claim named payments routed to a rail the claiming sidecar does not serve; nothing was claimed."""

    def __init__(self, numbers: Sequence[int]) -> None:
        super().__init__(f"{len(numbers)} payments belong to another rail, e.g. {sorted(numbers)[:5]}")
        self.numbers = list(numbers)


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One approver's decision on a batch (maker-checker)."""

    approver: str
    decision: str  # domain.approval.APPROVED or REJECTED
    reason: str
    request_id: str
    create_time: dt.datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> ApprovalRecord:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)})
