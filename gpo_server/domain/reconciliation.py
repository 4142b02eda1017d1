"""Statement reconciliation rules, no I/O: which payments a bank statement's entry books, and what follows.

An entry names its payments by end-to-end id (a single booking, or the transaction details of a batch
booking) or by reference: a batch booking's PmtInfId or the bank's AcctSvcrRef, which the ISO 20022 rail
stores as the rail_reference of the payments it settled from that booking. Payments of other rails match
by their idempotency key or rail_reference where the statement carries them. Amounts must agree exactly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gpo_server.domain.states import PaymentStatus
from gpo_server.statements.records import EntryRecord

# Stored on a payment a statement shows returned (REVERSED), with the return's reason in the message.
RETURN_REASON_CODE = "rjct.payment.returned"
# The attention flag of a payment a statement shows returned while GPO does not hold it as paid: no state
# transition fits (a SENT one is its rail's to settle, a FAILED one was never paid as far as GPO knows).
RETURNED_NOT_SUCCEEDED = (
    "returned on bank statement {statement} (entry {entry}{reason}) while {status} in GPO: the bank says it"
    " was paid and came back; settle it with the rail and the bank, then resolve this flag"
)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The ISO 20022 rail's EndToEndId of a later attempt: the key's 32 hex digits, "R" and two digits.
_ATTEMPT = re.compile(r"([0-9a-f]{32})R\d{2}")


def iso20022_end_to_end_id(idempotency_key: str) -> str:
    """The EndToEndId GPO's ISO 20022 rail puts in pain.001 for a key (rail_sidecars/rails/iso20022/
    pain001.py, end_to_end_id, first attempt): a UUID key without hyphens, another key's SHA-256 prefix."""
    if _UUID.fullmatch(idempotency_key):
        return idempotency_key.replace("-", "").lower()
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


class Outcome(StrEnum):
    MATCHED = "matched"  # a booked debit of exactly these payments
    RETURNED = "returned"  # money came back for exactly these payments: they are reversed
    # A return naming payments GPO does not hold as paid (e.g. still SENT, or FAILED): its SUCCEEDED
    # payments are reversed, the others flagged for attention.
    RETURN_NOT_SUCCEEDED = "return_not_succeeded"
    AMOUNT_MISMATCH = "amount_mismatch"  # names payments, but the amounts, currency or count differ
    PAID_NOT_SUCCEEDED = "paid_not_succeeded"  # a debit for payments GPO does not hold as paid
    UNMATCHED = "unmatched"  # a booked debit or return that names no payment of the batches looked at
    NOT_BOOKED = "not_booked"  # pending or informational: nothing to reconcile yet
    OTHER_CREDIT = "other_credit"  # money in that is no return (e.g. the account's funding)


# Entries an operator must look at, listed with every batch the statement was matched against.
PROBLEMS = frozenset(
    {Outcome.AMOUNT_MISMATCH, Outcome.PAID_NOT_SUCCEEDED, Outcome.UNMATCHED, Outcome.RETURN_NOT_SUCCEEDED}
)
# Matched entries that confirm a payment was paid.
CONFIRMING = frozenset({Outcome.MATCHED, Outcome.RETURNED, Outcome.RETURN_NOT_SUCCEEDED})
# Entries whose SUCCEEDED payments become REVERSED.
RETURNS = frozenset({Outcome.RETURNED, Outcome.RETURN_NOT_SUCCEEDED})
# Payments a return may name without an operator: paid, or already reversed.
PAID = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.REVERSED})


@dataclass(frozen=True, slots=True)
class PaymentKeys:
    """What matching needs of a stored payment."""

    batch_id: int
    number: int
    status: PaymentStatus
    amount_hundredths: int
    currency: str
    idempotency_key: str
    rail_reference: str


@dataclass(slots=True)
class EntryResult:
    entry: EntryRecord
    outcome: Outcome = Outcome.UNMATCHED
    payments: list[PaymentKeys] = field(default_factory=list)
    note: str = ""


class Matcher:
    """Finds the payments of one statement's entries. Offer it candidate payments in any number of slices
    (memory stays the statement's size), then read the results."""

    def __init__(self, entries: Sequence[EntryRecord]) -> None:
        self.entries = list(entries)
        self._by_id: dict[str, list[int]] = {}  # an end-to-end id -> entry positions
        self._by_ref: dict[str, list[int]] = {}  # AcctSvcrRef or PmtInfId -> entry positions
        for i, e in enumerate(self.entries):
            if not e.booked or (e.credit and not e.returned):
                continue
            for e2e in e.end_to_end_ids:
                self._by_id.setdefault(e2e, []).append(i)
                if attempt := _ATTEMPT.fullmatch(e2e):
                    self._by_id.setdefault(attempt.group(1), []).append(i)
            for ref in {e.servicer_reference, e.batch_reference} - {""}:
                self._by_ref.setdefault(ref, []).append(i)
        self._hits: list[dict[tuple[int, int], PaymentKeys]] = [{} for _ in self.entries]

    def offer(self, payments: Iterable[PaymentKeys]) -> None:
        for p in payments:
            found: set[int] = set()
            for key in (p.idempotency_key, iso20022_end_to_end_id(p.idempotency_key), p.rail_reference):
                found.update(self._by_id.get(key, ()))
            if p.rail_reference:
                found.update(self._by_ref.get(p.rail_reference, ()))
            for i in found:
                self._hits[i][(p.batch_id, p.number)] = p

    def results(self) -> list[EntryResult]:
        return [_judge(e, list(hits.values())) for e, hits in zip(self.entries, self._hits, strict=True)]


def _judge(entry: EntryRecord, payments: list[PaymentKeys]) -> EntryResult:
    if not entry.booked:
        return EntryResult(entry, Outcome.NOT_BOOKED)
    if entry.credit and not entry.returned:
        return EntryResult(entry, Outcome.OTHER_CREDIT)
    payments.sort(key=lambda p: (p.batch_id, p.number))
    if not payments:
        return EntryResult(entry, Outcome.UNMATCHED, note="names no payment of the batches looked at")
    total = sum(p.amount_hundredths for p in payments)
    currencies = {p.currency for p in payments}
    if currencies != {entry.currency} or total != entry.amount_hundredths:
        return EntryResult(
            entry,
            Outcome.AMOUNT_MISMATCH,
            payments,
            f"books {entry.amount_hundredths} hundredths {entry.currency}; its {len(payments)} payments"
            f" hold {total} in {', '.join(sorted(currencies))}",
        )
    if entry.batch_count and entry.batch_count != len(payments):
        return EntryResult(
            entry,
            Outcome.AMOUNT_MISMATCH,
            payments,
            f"the batch booking says {entry.batch_count} transactions; {len(payments)} payments found",
        )
    unpaid = [p for p in payments if p.status not in PAID]
    if entry.returned and unpaid:
        return EntryResult(
            entry,
            Outcome.RETURN_NOT_SUCCEEDED,
            payments,
            f"returns {len(unpaid)} payments GPO does not hold as paid, e.g. number {unpaid[0].number}"
            f" ({unpaid[0].status.value}): they are flagged for attention",
        )
    if entry.returned:
        return EntryResult(entry, Outcome.RETURNED, payments)
    if unpaid:
        return EntryResult(
            entry,
            Outcome.PAID_NOT_SUCCEEDED,
            payments,
            f"{len(unpaid)} of its payments are not paid in GPO, e.g. number {unpaid[0].number}"
            f" ({unpaid[0].status.value})",
        )
    return EntryResult(entry, Outcome.MATCHED, payments)
