"""The payment state machine. Every legal transition is listed here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class PaymentStatus(StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


S = PaymentStatus

TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.ACCEPTED: frozenset(
        {S.QUEUED, S.SENT, S.CANCELLED}
    ),  # SENT: a sidecar may claim before the relay marks it
    S.QUEUED: frozenset({S.SENT, S.CANCELLED}),
    S.SENT: frozenset({S.SUCCEEDED, S.FAILED}),  # once a rail may have moved money, only the rail decides
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}

FINAL: frozenset[PaymentStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


# Statuses a payment may leave for `target`; storage uses these as WHERE clauses so a stale or repeated
# update can never move a payment backwards.
def sources_of(target: PaymentStatus) -> frozenset[PaymentStatus]:
    return frozenset(s for s, nxt in TRANSITIONS.items() if target in nxt)


def can_move(source: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[source]


def is_final(status: PaymentStatus) -> bool:
    return status in FINAL


def batch_is_final(statuses: Iterable[PaymentStatus]) -> bool:
    """A batch is final when every one of its payments is."""
    return all(s in FINAL for s in statuses)


class BatchState(StrEnum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
