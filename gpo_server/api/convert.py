"""Stored records to API messages, and API names to stored ids."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import resources_pb2 as res_pb
from sqlalchemy import Row

from gpo_server.api.errors import invalid_argument
from gpo_server.domain.approval import APPROVED, DEFAULT_REQUIRED_APPROVALS, REJECTED, ApprovalPolicy
from gpo_server.domain.money import InvalidAmount, format_amount, parse_total
from gpo_server.domain.states import UPLOAD_CAUSE, BatchState, FundsBlockState, PaymentStatus, cause_of
from gpo_server.domain.validation import program_problem
from gpo_server.storage.funds import FundsBlockRecord
from gpo_server.storage.records import ApprovalRecord
from gpo_server.storage.store import BatchRecord, StatusTotal
from gpo_server.storage.webhooks import WebhookStatus

_BATCH_NAME = re.compile(r"batches/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")

BATCH_STATES = {s: getattr(res_pb, f"BATCH_STATE_{s.name}") for s in BatchState}
PAYMENT_STATUSES = {s: getattr(res_pb, f"PAYMENT_STATUS_{s.name}") for s in PaymentStatus}
APPROVAL_DECISIONS = {
    APPROVED: res_pb.APPROVAL_DECISION_APPROVED,
    REJECTED: res_pb.APPROVAL_DECISION_REJECTED,
}
_POLICY_NAME = re.compile(r"programs/(.+)/approvalPolicy", re.DOTALL)
_CURRENCY = re.compile(r"[A-Z]{3}")


_PAYMENT_NAME = re.compile(r"(batches/[^/]+)/payments/(.+)", re.DOTALL)


def payment_reference(name: str, field: str) -> tuple[str, str]:
    """The batch name and the reference of a payment's name, "batches/{batch}/payments/{reference_id}"."""
    match = _PAYMENT_NAME.fullmatch(name)
    if match is None:
        raise invalid_argument(
            f"{field} must be batches/{{uuid}}/payments/{{reference_id}}",
            "INVALID_PAYMENT_NAME",
            [(field, "not of the form batches/{uuid}/payments/{reference_id}")],
        )
    return match.group(1), match.group(2)


def batch_uid(name: str, field: str = "name") -> str:
    match = _BATCH_NAME.fullmatch(name)
    if match is None:
        raise invalid_argument(
            f"{field} must be batches/{{uuid}}",
            "INVALID_BATCH_NAME",
            [(field, "not of the form batches/{uuid}")],
        )
    return match.group(1)


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; GPO stores UTC only
        value = value.replace(tzinfo=dt.UTC)
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def batch_message(
    batch: BatchRecord,
    totals: Sequence[StatusTotal] | None = None,
    approvals: Sequence[ApprovalRecord] = (),
) -> res_pb.Batch:
    message = res_pb.Batch(
        name=f"batches/{batch.uid}",
        program=batch.program,
        request_id=batch.request_id,
        state=BATCH_STATES[batch.state],
        payer_fa=batch.payer_fa,
        schedule_time=timestamp(batch.schedule_time),
        callback_uri=batch.callback_uri,
        expected_payment_count=batch.expected_payment_count,
        expected_total_amount=(
            format_amount(batch.expected_total_hundredths)
            if batch.expected_total_hundredths is not None
            else ""
        ),
        payment_count=batch.payment_count,
        last_chunk_sequence=batch.last_chunk_sequence,
        create_time=timestamp(batch.create_time),
        update_time=timestamp(batch.update_time),
        cycle=batch.cycle,
        required_approvals=batch.required_approvals,
    )
    for a in approvals:
        message.approvals.add(
            approver=a.approver,
            decision=APPROVAL_DECISIONS[a.decision],
            reason=a.reason,
            create_time=timestamp(a.create_time),
        )
    for t in totals or ():
        message.totals.add(
            status=PAYMENT_STATUSES[t.status],
            currency_code=t.currency_code,
            count=t.count,
            amount=format_amount(t.amount_hundredths),
        )
    return message


FUNDS_BLOCK_STATES = {s: getattr(res_pb, f"FUNDS_BLOCK_STATE_{s.name}") for s in FundsBlockState}


def funds_block_message(block: FundsBlockRecord) -> res_pb.FundsBlock:
    return res_pb.FundsBlock(
        block_id=block.block_id,
        rail=block.rail,
        payer_fa=block.payer_fa,
        currency_code=block.currency_code,
        amount=format_amount(block.amount_hundredths),
        state=FUNDS_BLOCK_STATES[block.state],
        reason_code=block.reason_code,
        reason_message=block.reason_message,
        bank_reference=block.bank_reference,
        attempt_count=block.attempts,
        update_time=timestamp(block.update_time),
    )


def payment_message(batch_uid: str, row: Row[Any]) -> res_pb.Payment:
    m = row._mapping
    message = res_pb.Payment(
        name=f"batches/{batch_uid}/payments/{m['reference_id']}",
        reference_id=m["reference_id"],
        payer_fa=m["payer_fa"],
        payee_fa=m["payee_fa"],
        amount=format_amount(m["amount_hundredths"]) if m["amount_hundredths"] is not None else "",
        currency_code=m["currency_code"],
        payee_name=m["payee_name"],
        note=m["note"],
        purpose=m["purpose"],
        schedule_time=timestamp(m["schedule_time"]),
        status=PAYMENT_STATUSES[PaymentStatus(m["status"])],
        reason_code=m["reason_code"],
        reason_message=m["reason_message"],
        rail=m["rail"] or "",
        idempotency_key=m["idempotency_key"],
        rail_reference=m["rail_reference"],
        update_time=timestamp(m["update_time"]),
        attempts=m["attempts"],
        attention_reason=m["attention_reason"],
        retries=m["retries"],
    )
    if m["metadata_json"]:
        message.metadata.update(json.loads(m["metadata_json"]))
    return message


def encode_page_token(position: int, scope: str) -> str:
    """Opaque AIP-158 token: where the next page starts and the query it belongs to."""
    return base64.urlsafe_b64encode(json.dumps([position, scope]).encode()).decode()


_MAX_PAGE_TOKEN = 4096  # characters; GPO's own tokens are far shorter
_MAX_POSITION = 2**63 - 1  # positions are BIGINT ids and numbers


def decode_page_token(token: str, scope: str) -> int | None:
    """The position a token of encode_page_token names. Anything else, whether garbled or forged (a position
    past 64 bits, a boolean, deeply nested JSON), is INVALID_ARGUMENT, never a database error."""
    if not token:
        return None
    if len(token) <= _MAX_PAGE_TOKEN:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            if isinstance(decoded, list) and len(decoded) == 2:
                position, token_scope = decoded
                # bool is an int in Python: a forged `true` must not read as position 1.
                if token_scope == scope and type(position) is int and 0 <= position <= _MAX_POSITION:
                    return position
        except (ValueError, TypeError, RecursionError):
            pass
    raise invalid_argument(
        "page_token is invalid or belongs to another query",
        "INVALID_PAGE_TOKEN",
        [("page_token", "not from a previous call with the same parameters")],
    )


def audit_message(row: Any) -> res_pb.AuditEvent:
    """An audit_events row as an AuditEvent."""
    event = res_pb.AuditEvent(
        id=int(row.id),
        action=row.action,
        subject=row.subject,
        caller_kind=row.caller_kind,
        certificate_subject=row.certificate_subject,
        batch=f"batches/{row.batch_uid}" if row.batch_uid else "",
        payment_count=int(row.payment_count),
        request_id=row.request_id,
        detail_json=row.detail,
        hash=row.hash,
        previous_hash=row.previous_hash,
        create_time=timestamp(row.create_time),
    )
    return event


def upload_change(
    status: str, time: dt.datetime, reason_code: str = "", reason_message: str = ""
) -> res_pb.StatusChange:
    """The first entry of a payment's history: the status intake gave it (with its reason if rejected)."""
    return res_pb.StatusChange(
        status=PAYMENT_STATUSES[PaymentStatus(status)],
        change_time=timestamp(time),
        cause=UPLOAD_CAUSE,
        reason_code=reason_code,
        reason_message=reason_message,
    )


def status_change_message(row: Any) -> res_pb.StatusChange:
    """A payment_status_changes row as a StatusChange."""
    before, after = PaymentStatus(row.previous_status), PaymentStatus(row.status)
    return res_pb.StatusChange(
        previous_status=PAYMENT_STATUSES[before],
        status=PAYMENT_STATUSES[after],
        change_time=timestamp(row.change_time),
        cause=cause_of(before, after),
        reason_code=row.reason_code,
        reason_message=row.reason_message,
        attempts=row.attempts,
    )


def webhook_delivery_message(status: WebhookStatus) -> res_pb.WebhookDelivery:
    if status.failed_time is not None:
        state = res_pb.WEBHOOK_DELIVERY_STATE_FAILED
    elif status.attempts > 0:
        state = res_pb.WEBHOOK_DELIVERY_STATE_RETRYING
    elif status.delivered_sequence < status.last_sequence:
        state = res_pb.WEBHOOK_DELIVERY_STATE_PENDING
    else:
        state = res_pb.WEBHOOK_DELIVERY_STATE_DELIVERED
    return res_pb.WebhookDelivery(
        state=state,
        event_count=status.last_sequence,
        delivered_event_count=status.delivered_sequence,
        failed_attempt_count=status.attempts,
        last_error=status.last_error[:500],
        fail_time=timestamp(status.failed_time),
    )


def policy_program(name: str, field: str = "name") -> str:
    """The program of an approval policy's name, "programs/{program}/approvalPolicy"."""
    match = _POLICY_NAME.fullmatch(name)
    problem = "not of the form programs/{program}/approvalPolicy"
    if match is not None and (found := program_problem(match.group(1))) is None:
        return match.group(1)
    if match is not None:
        problem = f"program: {found}"
    raise invalid_argument(
        f"{field} must be programs/{{program}}/approvalPolicy", "INVALID_NAME", [(field, problem)]
    )


def policy_message(program: str, policy: ApprovalPolicy | None) -> res_pb.ApprovalPolicy:
    """A program's policy; an empty one (holding nothing) when it has none."""
    message = res_pb.ApprovalPolicy(name=f"programs/{program}/approvalPolicy")
    if policy is None:
        return message
    message.payment_count_threshold = policy.count_threshold
    message.required_approvals = policy.required_approvals
    for currency, hundredths in sorted(policy.amount_thresholds.items()):
        message.amount_thresholds.add(currency_code=currency, amount=format_amount(hundredths))
    if (updated := timestamp(policy.update_time)) is not None:
        message.update_time.CopyFrom(updated)
    return message


def policy_from_message(name: str, message: res_pb.ApprovalPolicy) -> ApprovalPolicy:
    """The policy an update asks for (`name`: "programs/{program}/approvalPolicy"); INVALID_ARGUMENT naming
    every field at fault."""
    program = policy_program(name, "name")
    thresholds: dict[str, int] = {}
    violations: list[tuple[str, str]] = []
    for i, t in enumerate(message.amount_thresholds):
        where = f"approval_policy.amount_thresholds[{i}]"
        if not _CURRENCY.fullmatch(t.currency_code):
            violations.append((f"{where}.currency_code", f"{t.currency_code!r} is not an ISO 4217 code"))
        if t.currency_code in thresholds:
            violations.append((f"{where}.currency_code", f"{t.currency_code} is named twice"))
        try:
            thresholds[t.currency_code] = parse_total(t.amount)
        except InvalidAmount as exc:
            violations.append((f"{where}.amount", str(exc)))
    policy = ApprovalPolicy(
        program=program,
        amount_thresholds=thresholds,
        count_threshold=message.payment_count_threshold,
        required_approvals=message.required_approvals or DEFAULT_REQUIRED_APPROVALS,
    )
    # Each threshold was checked above, by its index.
    violations += [
        (f"approval_policy.{f}", p) for f, p in policy.problems() if not f.startswith("amount_thresholds.")
    ]
    if violations:
        raise invalid_argument("the approval policy is invalid", "INVALID_APPROVAL_POLICY", violations)
    return policy
