"""G2P Connect JSON to and from GPO: envelopes, headers, disbursements, statuses and reason codes.

Field names are the spec's (disburse_core_api_v1.0.0.yaml), snake_case exactly. Nothing here does I/O.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import disbursement_service_pb2 as api_pb

from gpo_server.domain.money import InvalidAmount, format_amount, parse_amount
from gpo_server.domain.states import PaymentStatus
from gpo_server.domain.validation import MAX_REFERENCE_ID

VERSION = "1.0.0"
S = PaymentStatus

# RequestStatus: rcvd (received), pdng (initiated), succ, rjct.
STATUS = {
    S.ACCEPTED: "rcvd",
    S.QUEUED: "pdng",
    S.SENT: "pdng",
    S.SUCCEEDED: "succ",
    S.FAILED: "rjct",
    S.REJECTED: "rjct",
    S.CANCELLED: "rjct",
    S.REVERSED: "rjct",
}

# GPO reason codes to the spec's DisburseStatusReasonCode enum. GPO's codes not in the enum are left out
# of status_reason_code (the schema would refuse them) and given in status_reason_message instead.
_SPEC_REASONS = {
    "rjct.reference_id.invalid": "rjct.reference_id.invalid",
    "rjct.reference_id.duplicate": "rjct.reference_id.duplicate",
    "rjct.payer_fa.invalid": "rjct.payer_fa.invalid",
    "rjct.payee_fa.invalid": "rjct.payee_fa.invalid",
    "rjct.payee_fa.unroutable": "rjct.payee_fa.invalid",
    "rjct.payee_fa.not_resolved": "rjct.payee_fa.invalid",
    "rjct.amount.invalid": "rjct.amount.invalid",
    "rjct.amount.limit_exceeded": "rjct.amount.invalid",
    "rjct.currency_code.invalid": "rjct.currency_code.invalid",
    "rjct.scheduled_timestamp.invalid": "rjct.schedule_ts.invalid",
    "rjct.schedule_ts.invalid": "rjct.schedule_ts.invalid",
}

# Metadata keys under which GPO keeps the spec's fields it has no column for; reported back as sent.
META_PAYER_NAME = "g2p.payer_name"
META_INSTRUCTION = "g2p.instruction"
META_LOCALE = "g2p.locale"
META_PAYEE_ID = "g2p.payee_id"  # the person ID the sender gave, when the mapper resolved it
META_META = "g2p.meta"

# The spec's field limits (disburse_core_api_v1.0.0.yaml): note and purpose at most 99 characters,
# instruction 999, locale ISO 639-3 (three lower-case letters). GPO's own limits are wider; a G2P Connect message keeps
# to the spec's. reference_id has no limit in the spec; GPO stores at most MAX_REFERENCE_ID characters
# and refuses a message with a longer one rather than truncate it.
SPEC_MAX_NOTE = 99
SPEC_MAX_PURPOSE = 99
SPEC_MAX_INSTRUCTION = 999
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_LOCALE = re.compile(r"^[a-z]{3}$")


def now() -> str:
    return iso(dt.datetime.now(dt.UTC))


def iso(value: dt.datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive datetimes; GPO stores UTC only
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat(timespec="milliseconds")


def parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 date-time with a time zone, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# ---- envelopes ----------------------------------------------------------------------------------


def ack(status: str, correlation_id: str, code: str = "", message: str = "") -> dict[str, Any]:
    """The spec's Response: ACK, NACK, or ERR with an Error (code from its enum)."""
    body: dict[str, Any] = {"ack_status": status, "timestamp": now(), "correlation_id": correlation_id}
    if code:
        body["error"] = {"code": code, "message": message[:999]}
    return {"message": body}


def http_error(code: str, message: str) -> dict[str, Any]:
    """HttpErrorResponse, for 401 and 403."""
    return {"errors": [{"code": code, "message": message[:999]}]}


def callback_header(
    action: str,
    status: str,
    *,
    sender_id: str,
    receiver_id: str,
    total_count: int | None = None,
    completed_count: int | None = None,
    reason_code: str = "",
    reason_message: str = "",
) -> dict[str, Any]:
    """MsgCallbackHeader_V1.0.0, from GPO (sender_id) to the original sender (receiver_id)."""
    header: dict[str, Any] = {
        "version": VERSION,
        "message_id": str(uuid.uuid4()),
        "message_ts": now(),
        "action": action,
        "status": status,
        "sender_id": sender_id,
        "receiver_id": receiver_id,
        "is_msg_encrypted": False,
    }
    if total_count is not None:
        header["total_count"] = total_count
    if completed_count is not None:
        header["completed_count"] = completed_count
    if reason_code:
        header["status_reason_code"] = reason_code
    if reason_message:
        header["status_reason_message"] = reason_message[:999]
    return header


# ---- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeaderRejection:
    """A whole message refused for its header: MsgHeaderStatusReasonCode."""

    code: str
    message: str


def check_header(
    header: Mapping[str, Any], actions: frozenset[str], max_count: int
) -> HeaderRejection | None:
    version = header.get("version", VERSION)
    if version != VERSION:
        return HeaderRejection("rjct.version.invalid", f"version {str(version)[:20]!r} is not {VERSION}")
    if parse_time(header.get("message_ts")) is None:
        return HeaderRejection(
            "rjct.message_ts.invalid", "message_ts must be an ISO 8601 date-time with zone"
        )
    if header.get("action") not in actions:
        return HeaderRejection(
            "rjct.action.invalid", f"action must be one of {', '.join(sorted(actions))} here"
        )
    count = header.get("total_count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        return HeaderRejection("rjct.total_count.invalid", "total_count must be a non-negative integer")
    if count > max_count:
        return HeaderRejection("rjct.total_count.limit_exceeded", f"at most {max_count} requests per message")
    return None


@dataclass
class ParsedDisbursements:
    """A DisburseRequest as GPO payments. `rejections` are refusals decided before intake (by index),
    `person_ids` the payees to resolve through the mapper (by index)."""

    transaction_id: str
    payments: list[api_pb.PaymentInput] = field(default_factory=list)
    rejections: dict[int, tuple[str, str]] = field(default_factory=dict)
    person_ids: dict[int, str] = field(default_factory=dict)


def parse_disbursements(
    message: Mapping[str, Any], *, default_currency: str, id_providers: frozenset[str]
) -> ParsedDisbursements:
    """Raises ValueError when the message is not a DisburseRequest at all (err.request.bad)."""
    transaction_id = message.get("transaction_id")
    items = message.get("disbursements")  # required, though the spec's text lists "disburemsents"
    if not isinstance(transaction_id, str) or not transaction_id or len(transaction_id) > 99:
        raise ValueError("message.transaction_id must be a string of 1 to 99 characters")
    if not isinstance(items, list):
        raise ValueError("message.disbursements must be a list")
    for index, item in enumerate(items):
        ref = item.get("reference_id") if isinstance(item, dict) else None
        if isinstance(ref, str) and len(ref) > MAX_REFERENCE_ID:
            raise ValueError(
                f"disbursements[{index}].reference_id is {len(ref)} characters; GPO takes at most "
                f"{MAX_REFERENCE_ID} and would not report it back as sent"
            )
    parsed = ParsedDisbursements(transaction_id)
    for index, item in enumerate(items):
        parsed.payments.append(_payment(parsed, index, item, default_currency, id_providers))
    return parsed


def _payment(
    parsed: ParsedDisbursements, index: int, item: Any, default_currency: str, providers: frozenset[str]
) -> api_pb.PaymentInput:
    if not isinstance(item, dict):
        parsed.rejections[index] = ("rjct.reference_id.invalid", "a disbursement must be an object")
        return api_pb.PaymentInput(reference_id=f"#{index + 1}")

    def text(name: str) -> str:
        value = item.get(name, "")
        return value if isinstance(value, str) else ""

    reference = item.get("reference_id")
    if not isinstance(reference, str):
        parsed.rejections[index] = ("rjct.reference_id.invalid", "reference_id must be a string")
        reference = "" if reference is None else json.dumps(reference)[:128]
    payment = api_pb.PaymentInput(
        reference_id=reference,
        payer_fa=text("payer_fa"),
        payee_fa=text("payee_fa"),
        amount=text("amount"),
        currency_code=text("currency_code") or default_currency,
        payee_name=text("payee_name"),
        note=text("note"),
        purpose=text("purpose"),
    )
    for name in ("payer_fa", "payee_fa", "amount"):  # required by the spec
        if not isinstance(item.get(name), str):
            parsed.rejections.setdefault(index, (f"rjct.{name}.invalid", f"{name} must be a string"))
    if "scheduled_timestamp" in item:
        when = parse_time(item["scheduled_timestamp"])
        if when is None:
            parsed.rejections.setdefault(
                index, ("rjct.schedule_ts.invalid", "scheduled_timestamp is not an ISO 8601 date-time")
            )
        else:
            ts = Timestamp()
            ts.FromDatetime(when.astimezone(dt.UTC))
            payment.schedule_time.CopyFrom(ts)
    for name, limit in (
        ("note", SPEC_MAX_NOTE),
        ("purpose", SPEC_MAX_PURPOSE),
        ("instruction", SPEC_MAX_INSTRUCTION),
    ):
        if len(text(name)) > limit:
            parsed.rejections.setdefault(
                index, (f"rjct.{name}.invalid", f"{name} is longer than the spec's {limit} characters")
            )
    if "locale" in item and not (isinstance(item["locale"], str) and _LOCALE.fullmatch(item["locale"])):
        parsed.rejections.setdefault(
            index, ("rjct.locale.invalid", "locale must be an ISO 639-3 code: three lower-case letters")
        )
    for key, name in ((META_PAYER_NAME, "payer_name"), (META_INSTRUCTION, "instruction")):
        if value := text(name):
            payment.metadata[key] = value
    if isinstance(item.get("locale"), str) and _LOCALE.fullmatch(item["locale"]):
        payment.metadata[META_LOCALE] = item["locale"]
    if isinstance(item.get("meta"), dict) and item["meta"]:
        payment.metadata[META_META] = json.dumps(item["meta"], ensure_ascii=False, separators=(",", ":"))
    provider = payment.payee_fa.rpartition("@")[2].lower()
    if providers and provider in providers and index not in parsed.rejections:
        parsed.person_ids[index] = payment.payee_fa
    return payment


# ---- statuses -----------------------------------------------------------------------------------


def spec_reason(reason_code: str) -> str | None:
    return _SPEC_REASONS.get(reason_code)


def disbursement_status(m: Mapping[Any, Any]) -> dict[str, Any]:
    """One DisburseResponse.disbursements_status item from a stored payment row's mapping."""
    status = PaymentStatus(m["status"])
    meta: dict[str, str] = json.loads(m["metadata_json"]) if m.get("metadata_json") else {}
    item: dict[str, Any] = {
        "reference_id": m["reference_id"],
        "timestamp": iso(m["update_time"]),
        "status": STATUS[status],
    }
    reason, reason_message = m.get("reason_code") or "", m.get("reason_message") or ""
    if reason:
        if code := spec_reason(reason):
            item["status_reason_code"] = code
        item["status_reason_message"] = f"{reason}: {reason_message}"[:999]
    elif status is S.CANCELLED:
        item["status_reason_message"] = "cancelled"
    if m.get("amount_hundredths") is not None:
        amount = format_amount(m["amount_hundredths"])
        with contextlib.suppress(InvalidAmount):  # reported only in the spec's form (never negative)
            parse_amount(amount)
            item["amount"] = amount
    # A payee given as a person ID is reported as sent, never as the account it resolved to.
    payee = meta.get(META_PAYEE_ID) or m.get("payee_fa") or ""
    for key, value in (
        ("payer_fa", m.get("payer_fa") or ""),
        ("payer_name", meta.get(META_PAYER_NAME, "")),
        ("payee_fa", payee),
        ("payee_name", m.get("payee_name") or ""),
        ("instruction", meta.get(META_INSTRUCTION, "")[:999]),
        ("locale", meta.get(META_LOCALE, "")),
    ):
        if value:
            item[key] = value
    if _CURRENCY.fullmatch(m.get("currency_code") or ""):
        item["currency_code"] = m["currency_code"]
    return item
