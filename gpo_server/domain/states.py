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
    REVERSED = "reversed"


S = PaymentStatus

# Automatic transitions: what intake, dispatch, sidecars and rails may do.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    # SENT straight from ACCEPTED: a sidecar may claim a chunk before the relay has marked it QUEUED.
    S.ACCEPTED: frozenset({S.QUEUED, S.SENT, S.CANCELLED}),
    S.QUEUED: frozenset({S.SENT, S.CANCELLED}),
    # Once a rail may have moved money, only the rail decides.
    S.SENT: frozenset({S.SUCCEEDED, S.FAILED}),
    # A payee's institution may return money after reporting it paid (e.g. a camt.054 return).
    S.SUCCEEDED: frozenset({S.REVERSED}),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REVERSED: frozenset(),
}

# Final: nothing in GPO moves the payment on by itself. A SUCCEEDED payment is final even though a late
# return may still reverse it; a FAILED one is final even though an operator may retry it.
FINAL: frozenset[PaymentStatus] = frozenset({S.SUCCEEDED, S.FAILED, S.REJECTED, S.CANCELLED, S.REVERSED})

# Operator actions, apart from the automatic machine: "retry failed payments" sends FAILED back to ACCEPTED.
OPERATOR_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {S.FAILED: frozenset({S.ACCEPTED})}


# Why a payment changed status, by (before, after): the `cause` of its history (ListStatusChanges). Every
# transition above and every operator transition has one; "upload" is the status intake gave it.
UPLOAD_CAUSE = "upload"
CAUSES: dict[tuple[PaymentStatus, PaymentStatus], str] = {
    (S.ACCEPTED, S.QUEUED): "dispatch",  # its work chunk was published to the rail's queue
    (S.ACCEPTED, S.SENT): "claim",  # a rail sidecar claimed it for execution
    (S.QUEUED, S.SENT): "claim",
    (S.ACCEPTED, S.CANCELLED): "cancel",  # an operator or the program cancelled the batch or the payment
    (S.QUEUED, S.CANCELLED): "cancel",
    (S.SENT, S.SUCCEEDED): "rail",  # the rail's outcome, reported by its sidecar
    (S.SENT, S.FAILED): "rail",
    (S.SUCCEEDED, S.REVERSED): "reversal",  # the payee's institution returned the money
    (S.FAILED, S.ACCEPTED): "retry",  # an operator retried the failed payment
}


def cause_of(before: PaymentStatus, after: PaymentStatus) -> str:
    return CAUSES.get((before, after), "other")


# Statuses a dead-lettered chunk's payments are re-sent from automatically (a re-drive), keeping their
# status and key: no claim ever took them, so no rail can have seen them and nobody can be executing
# them. Not a transition: the payment is queued again, in a new chunk. ACCEPTED too: a chunk can be
# dead-lettered before the relay has committed its QUEUED mark. SENT payments are the sweeper's (a rail
# look-up first).
REDRIVABLE: frozenset[PaymentStatus] = frozenset(s for s in PaymentStatus if S.SENT in TRANSITIONS[s])


# Statuses a payment may leave for `target`; storage uses these as WHERE clauses so a stale or repeated
# update can never move a payment backwards.
def sources_of(target: PaymentStatus) -> frozenset[PaymentStatus]:
    return frozenset(s for s, nxt in TRANSITIONS.items() if target in nxt)


# Statuses an operator action may move a payment from to `target` (OPERATOR_TRANSITIONS), likewise.
def operator_sources_of(target: PaymentStatus) -> frozenset[PaymentStatus]:
    return frozenset(s for s, nxt in OPERATOR_TRANSITIONS.items() if target in nxt)


def can_move(source: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[source]


def is_final(status: PaymentStatus) -> bool:
    return status in FINAL


class ClaimAction(StrEnum):
    EXECUTE = "execute"  # never sent: the first execution
    VERIFY = "verify"  # sent before and nobody can still be executing it: look it up first
    BUSY = "busy"  # another claim holds it, or its last rail call may still take effect
    SKIP = "skip"  # final: nothing to do


# What a claim may do with a payment, by its status and its holder (the claim rule of
# SIDECAR_CONTRACT.md, section 3.2). A SENT payment is handed over only when its holder is this very
# claim_id (the same process, which never works on one chunk twice at once) or when its previous holder's
# in-flight window (lease plus the rail's longest call) has closed.
def claim_action(status: PaymentStatus, *, held_by_caller: bool, holder_in_flight: bool) -> ClaimAction:
    if S.SENT in TRANSITIONS[status]:
        return ClaimAction.EXECUTE
    if status is S.SENT:
        return ClaimAction.VERIFY if held_by_caller or not holder_in_flight else ClaimAction.BUSY
    return ClaimAction.SKIP


def batch_is_final(statuses: Iterable[PaymentStatus]) -> bool:
    """A batch is final when every one of its payments is."""
    return all(s in FINAL for s in statuses)


class BatchState(StrEnum):
    UPLOADING = "uploading"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
