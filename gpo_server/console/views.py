"""What the console's pages show, made from API messages: plain values for the templates, with every
financial address masked (gpo_kernel.masking, as logs show them) and amounts kept as the API's decimal
strings."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel.masking import mask_fa

BATCH_STATES = tuple(
    n.removeprefix("BATCH_STATE_") for n in res_pb.BatchState.keys() if n != "BATCH_STATE_UNSPECIFIED"
)
PAYMENT_STATUSES = ("ACCEPTED", "QUEUED", "SENT", "SUCCEEDED", "FAILED", "REJECTED", "CANCELLED", "REVERSED")
FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "REJECTED", "CANCELLED", "REVERSED"})
RAIL_WINDOWS = (60, 300, 900, 3600, 86400)
REASON_SAMPLE = 1000  # a batch page counts failure reasons over at most this many FAILED payments


def time_text(value: Timestamp) -> str:
    if not value.seconds and not value.nanos:
        return ""
    return value.ToDatetime(tzinfo=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status_name(value: int) -> str:
    return res_pb.PaymentStatus.Name(value).removeprefix("PAYMENT_STATUS_")


def quoted(text: str) -> str:
    """A string literal of the API's filter language."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_CONSOLE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&+-]*")


def safe_back(path: str) -> str:
    """A link back inside the console only: a plain path, never another site or a script URL (browsers drop
    tabs and newlines from URLs, so a slash, a tab and a slash would be "//host": only plain characters pass)."""
    return path if _CONSOLE_PATH.fullmatch(path) else "/batches"


@dataclass(frozen=True, slots=True)
class AmountLine:
    status: str
    currency: str
    count: int
    amount: str


@dataclass(frozen=True, slots=True)
class ApprovalLine:
    approver: str
    decision: str  # APPROVED, REJECTED
    reason: str
    time: str


@dataclass(slots=True)
class BatchView:
    name: str
    uid: str
    program: str
    state: str
    payment_count: int
    done: int
    percent: int
    counts: dict[str, int]
    amounts: list[AmountLine]
    create_time: str
    update_time: str
    required_approvals: int = 0  # maker-checker: 0 when the batch needed no approval
    approvals: list[ApprovalLine] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in ("COMPLETED", "CANCELLED")


def batch_view(batch: res_pb.Batch) -> BatchView:
    counts: Counter[str] = Counter()
    amounts = []
    for total in batch.totals:
        status = status_name(total.status)
        counts[status] += total.count
        amounts.append(AmountLine(status, total.currency_code, total.count, total.amount))
    done = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
    return BatchView(
        name=batch.name,
        uid=batch.name.removeprefix("batches/"),
        program=batch.program,
        state=res_pb.BatchState.Name(batch.state).removeprefix("BATCH_STATE_"),
        payment_count=batch.payment_count,
        done=done,
        percent=done * 100 // batch.payment_count if batch.payment_count else 0,
        counts={s: counts[s] for s in PAYMENT_STATUSES if counts[s]},
        amounts=sorted(amounts, key=lambda a: (PAYMENT_STATUSES.index(a.status), a.currency)),
        create_time=time_text(batch.create_time),
        update_time=time_text(batch.update_time),
        required_approvals=batch.required_approvals,
        approvals=[
            ApprovalLine(
                a.approver,
                res_pb.ApprovalDecision.Name(a.decision).removeprefix("APPROVAL_DECISION_"),
                a.reason,
                time_text(a.create_time),
            )
            for a in batch.approvals
        ],
    )


@dataclass(frozen=True, slots=True)
class FundsBlockView:
    """A batch's funds block with the sponsor bank (docs/TREASURY.md), as the batch page shows it."""

    rail: str
    payer_fa: str  # masked
    currency: str
    amount: str
    state: str
    reason: str
    attempts: int
    update_time: str


def funds_block_views(batch: res_pb.Batch) -> list[FundsBlockView]:
    return [
        FundsBlockView(
            rail=b.rail,
            payer_fa=mask_fa(b.payer_fa),
            currency=b.currency_code,
            amount=b.amount,
            state=res_pb.FundsBlockState.Name(b.state).removeprefix("FUNDS_BLOCK_STATE_"),
            reason=" ".join(x for x in (b.reason_code, b.reason_message and f"({b.reason_message})") if x),
            attempts=b.attempt_count,
            update_time=time_text(b.update_time),
        )
        for b in batch.funds_blocks
    ]


def progress_json(view: BatchView) -> dict[str, Any]:
    return {
        "state": view.state,
        "final": view.final,
        "payment_count": view.payment_count,
        "done": view.done,
        "percent": view.percent,
        "counts": view.counts,
    }


@dataclass(frozen=True, slots=True)
class PaymentView:
    name: str
    batch_uid: str
    reference_id: str
    payee: str  # masked
    payer: str  # masked
    payee_name: str
    amount: str
    currency: str
    status: str
    reason_code: str
    reason_message: str
    rail: str
    rail_reference: str
    attempts: int
    retries: int
    attention_reason: str
    update_time: str


def payment_view(payment: res_pb.Payment) -> PaymentView:
    return PaymentView(
        name=payment.name,
        batch_uid=payment.name.partition("/payments/")[0].removeprefix("batches/"),
        reference_id=payment.reference_id,
        payee=mask_fa(payment.payee_fa),
        payer=mask_fa(payment.payer_fa),
        payee_name=payment.payee_name,
        amount=payment.amount,
        currency=payment.currency_code,
        status=status_name(payment.status),
        reason_code=payment.reason_code,
        reason_message=payment.reason_message,
        rail=payment.rail,
        rail_reference=payment.rail_reference,
        attempts=payment.attempts,
        retries=payment.retries,
        attention_reason=payment.attention_reason,
        update_time=time_text(payment.update_time),
    )


def reason_counts(payments: Iterable[res_pb.Payment]) -> list[tuple[str, int]]:
    return Counter(p.reason_code or "(none)" for p in payments).most_common()


@dataclass(frozen=True, slots=True)
class ChangeView:
    previous: str
    status: str
    time: str
    cause: str
    reason_code: str
    reason_message: str


def change_view(change: res_pb.StatusChange) -> ChangeView:
    previous = status_name(change.previous_status) if change.previous_status else ""
    return ChangeView(
        previous,
        status_name(change.status),
        time_text(change.change_time),
        change.cause,
        change.reason_code,
        change.reason_message,
    )


@dataclass(frozen=True, slots=True)
class RailView:
    rail: str
    succeeded: int
    failed: int
    per_minute: str
    error_rate: str
    reasons: list[tuple[str, int]] = field(default_factory=list)
    waiting: int = 0
    sent: int = 0


def rail_view(stats: res_pb.RailStats, window_s: int) -> RailView:
    settled = stats.succeeded_count + stats.failed_count
    # Rates for display only (money is never a float): tenths of a payment per minute, percent with one decimal.
    tenths_per_minute = settled * 600 // window_s if window_s else 0
    error_permille = stats.failed_count * 1000 // settled if settled else 0
    return RailView(
        rail=stats.rail,
        succeeded=stats.succeeded_count,
        failed=stats.failed_count,
        per_minute=f"{tenths_per_minute // 10}.{tenths_per_minute % 10}",
        error_rate=f"{error_permille // 10}.{error_permille % 10}%" if settled else "-",
        reasons=[(r.reason_code or "(none)", r.count) for r in stats.failure_reasons],
        waiting=stats.waiting_count,
        sent=stats.sent_count,
    )


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    name: str
    rail: str
    chunk_id: str
    batch_uid: str
    payment_count: int
    reason: str
    create_time: str


def dead_letter_view(dead: res_pb.DeadLetter) -> DeadLetterView:
    return DeadLetterView(
        dead.name,
        dead.rail,
        dead.chunk_id,
        dead.batch.removeprefix("batches/"),
        dead.payment_count,
        dead.reason,
        time_text(dead.create_time),
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    summary: str
    payment: PaymentView | None = None


def outcome_view(result: Any) -> Outcome:
    if isinstance(result, api_pb.RedriveDeadLetterResponse):
        count = result.redriven_count
        if count:
            return Outcome(f"{count} payment{'s' if count != 1 else ''} sent again with their keys.")
        return Outcome("No payment was sent again (none was waiting, or this request already acted).")
    if isinstance(result, res_pb.Payment):
        view = payment_view(result)
        return Outcome(f"The payment is now {view.status}.", view)
    if isinstance(result, res_pb.Batch):
        batch = batch_view(result)
        approved = sum(1 for a in batch.approvals if a.decision == "APPROVED")
        return Outcome(
            f"The batch is now {batch.state} ({approved} of {batch.required_approvals} approvals)."
        )
    return Outcome("Done.")


@dataclass(frozen=True, slots=True)
class CycleView:
    name: str
    program: str
    cycle: str
    window: str
    repeat: bool
    batch_count: int
    declared: str
    totals: list[res_pb.CycleTotal]


def cycle_view(cycle: res_pb.Cycle) -> CycleView:
    program, _, cycle_id = cycle.name.removeprefix("programs/").rpartition("/cycles/")
    start = time_text(cycle.start_time) if cycle.HasField("start_time") else "…"
    end = time_text(cycle.end_time) if cycle.HasField("end_time") else "…"
    return CycleView(
        name=cycle.name,
        program=program,
        cycle=cycle_id,
        window="" if start == end == "…" else f"{start} to {end}",
        repeat=cycle.allow_repeat_payments,
        batch_count=cycle.batch_count,
        declared=f"{cycle.declared_payment_count} payments, {cycle.declared_total_amount}",
        totals=list(cycle.totals),
    )
