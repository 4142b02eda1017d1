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
    # The upload is complete and the program's approval policy holds the batch for approvers
    # (maker-checker, docs/TREASURY.md): nothing of it is published until it is released.
    AWAITING_APPROVAL = "awaiting_approval"
    # The upload is complete (and approved, if it needed approval); the batch's funds are being blocked with
    # the sponsor bank by the sidecar of a rail with funds control (docs/TREASURY.md), or were found
    # insufficient. Nothing is published yet.
    AWAITING_FUNDS = "awaiting_funds"
    PROCESSING = "processing"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


B = BatchState

# The batch state machine, like TRANSITIONS for payments: every legal move of a batch, and nowhere else.
# Storage takes its WHERE clauses from here (batch_sources_of), so a stale or repeated update never moves
# a batch backwards or past a gate. PROCESSING is reached from a gate only through the storage function that
# releases a batch (storage/funds.py, `release_batch`), which decides the next state with
# `next_state_after_gates`: the end of an upload not held for approval, and the last approval, both go there.
BATCH_TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    B.UPLOADING: frozenset({B.AWAITING_APPROVAL, B.AWAITING_FUNDS, B.PROCESSING, B.CANCELLED}),
    # Approved (released), or rejected by an approver (CANCELLED).
    B.AWAITING_APPROVAL: frozenset({B.AWAITING_FUNDS, B.PROCESSING, B.CANCELLED}),
    B.AWAITING_FUNDS: frozenset({B.PROCESSING, B.CANCELLED}),
    B.PROCESSING: frozenset({B.COMPLETED, B.CANCELLED}),
    B.COMPLETED: frozenset({B.PROCESSING}),  # an operator's retry of failed payments reopens it
    B.CANCELLED: frozenset(),
}

# A batch is final when nothing in GPO moves it on by itself (a CANCELLED one's claimed payments still
# finish on their rails).
BATCH_FINAL: frozenset[BatchState] = frozenset({B.COMPLETED, B.CANCELLED})


def batch_sources_of(target: BatchState) -> frozenset[BatchState]:
    """States a batch may leave for `target`: storage's WHERE clauses."""
    return frozenset(s for s, nxt in BATCH_TRANSITIONS.items() if target in nxt)


def can_move_batch(source: BatchState, target: BatchState) -> bool:
    return target in BATCH_TRANSITIONS[source]


def next_state_after_gates(*, needs_funds: bool) -> BatchState:
    """Where a batch goes once its upload ended (and any approval it needed was given): it waits for its
    funds block when some accepted payment goes to a rail with funds control, else it dispatches."""
    return B.AWAITING_FUNDS if needs_funds else B.PROCESSING


class FundsBlockState(StrEnum):
    """A batch's funds block with the sponsor bank, one per rail and currency (docs/TREASURY.md)."""

    REQUESTED = "requested"  # the rail's sidecar is to block it (ClaimFundsBlocks)
    BLOCKED = "blocked"  # the bank holds it: payments are debited against it
    INSUFFICIENT = "insufficient"  # the bank refused: not enough funds; re-checked later
    RELEASING = "releasing"  # the batch was cancelled: the sidecar is to release it
    RELEASED = "released"  # the bank released what was left of it


F = FundsBlockState

FUNDS_TRANSITIONS: dict[FundsBlockState, frozenset[FundsBlockState]] = {
    F.REQUESTED: frozenset({F.BLOCKED, F.INSUFFICIENT, F.RELEASING}),
    # A re-check of an insufficient block asks the bank again; the block stays INSUFFICIENT meanwhile.
    F.INSUFFICIENT: frozenset({F.BLOCKED, F.RELEASING}),
    F.BLOCKED: frozenset({F.RELEASING}),
    F.RELEASING: frozenset({F.RELEASED}),
    F.RELEASED: frozenset(),
}


def funds_sources_of(target: FundsBlockState) -> frozenset[FundsBlockState]:
    return frozenset(s for s, nxt in FUNDS_TRANSITIONS.items() if target in nxt)
