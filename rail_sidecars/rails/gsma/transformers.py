"""GPO ↔ GSMA Mobile Money API v1.2 (disbursements): request bodies, result parsing and reason codes.

Pure functions, no I/O. Field names follow the spec's schemas: `requestBatchTransaction`,
`requestTransaction`, `responseBatchTransactionCompletion`, `responseBatchTransactionRejection`,
`errorObject`, `requestGenericPatch`.

Mapping (GPO → MMAPI transaction):
    idempotency_key → requestingOrganisationTransactionReference, and metadata gpoIdempotencyKey
    reference_id    → metadata gpoReferenceId
    purpose         → metadata gpoPurpose
    note            → descriptionText (first 160 characters)
    payee_fa        → creditParty [{key, value}] by the address scheme (mobile: → msisdn, ...)
    payer_fa        → debitParty, unless the rail's options give a fixed debit party
    amount          → amount without trailing zeros ("125.50" → "125.5", "100.00" → "100")
    currency_code   → currency
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpo_kernel.money import InvalidAmount, format_amount, format_shortest, parse_amount, parse_units
from gpo_kernel.reasons import Reason
from rail_sidecars.rails.base import Outcome, RailPayment, RailResult

# The spec's `amount` pattern: no leading zeros and no trailing zeros in the fraction.
MMAPI_AMOUNT = re.compile(r"^([0]|([1-9][0-9]{0,17}))([.][0-9]{0,3}[1-9])?$", re.ASCII)

# Financial-address scheme → MMAPI account identifier key (the spec's identifier list).
DEFAULT_FA_SCHEMES: dict[str, str] = {
    "mobile": "msisdn",
    "msisdn": "msisdn",
    "wallet": "walletid",
    "account": "accountid",
    "iban": "iban",
    "bank": "bankaccountno",
    "email": "emailaddress",
    "alias": "identityalias",
    "consumer": "consumerno",
    "mandate": "mandatereference",
}

META_KEY = "gpoIdempotencyKey"
META_REFERENCE = "gpoReferenceId"
META_PURPOSE = "gpoPurpose"
APPROVE_PATCH: list[dict[str, str]] = [{"op": "replace", "path": "/batchStatus", "value": "approved"}]

_TEXT_MAX = 256  # most MMAPI strings
_DESCRIPTION_MAX = 160

# MMAPI errorCode (in an errorObject, or named in a rejectionReason) → GPO reason code.
ERROR_REASONS: dict[str, str] = {
    "identifierError": Reason.PAYEE_FA_INVALID,
    "insufficientFunds": Reason.RAIL_INSUFFICIENT_FUNDS,
    "maxBalanceExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "greaterThanTransactionMaxValue": Reason.RAIL_LIMIT_EXCEEDED,
    "dailyVolumeLimitExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "dailyValueLimitExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "weeklyVolumeLimitExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "weeklyValueLimitExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "monthlyVolumeLimitExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "monthlyValueLimitExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "accountMaxTotalVolumeExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "accountMaxTotalValueExceeded": Reason.RAIL_LIMIT_EXCEEDED,
    "lessThanTransactionMinValue": Reason.AMOUNT_INVALID,
    "negativeValue": Reason.AMOUNT_INVALID,
    "underPaymentNotAllowed": Reason.AMOUNT_INVALID,
    "overPaymentNotAllowed": Reason.AMOUNT_INVALID,
    "currencyNotSupported": Reason.CURRENCY_CODE_INVALID,
    "requestDeclined": "rjct.payee_fa.blocked",
    "noMandateAuthority": "rjct.payee_fa.blocked",
    "countryofOriginNotPermitted": "rjct.payee_fa.blocked",
    "nationalityNotPermitted": "rjct.payee_fa.blocked",
    "samePartiesError": Reason.PAYEE_FA_INVALID,
}
# A rejection naming one of these does not say what happened to the money: the provider saw the same
# reference before, and that earlier transaction may have been paid. It is never reported as FAILED.
UNDECIDED_ERRORS = frozenset({"duplicateRequest"})
_ERROR_WORD = re.compile(r"[A-Za-z]+")
_ERROR_BY_LOWER = {code.lower(): code for code in (*ERROR_REASONS, *UNDECIDED_ERRORS)}


class TransformError(ValueError):
    """A payment GPO accepted that this rail cannot express; it fails on its own, before any request."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class BodyOptions:
    """Rail-wide parts of a batch body, from the rail's options."""

    fa_schemes: Mapping[str, str]
    debit_party: tuple[tuple[str, str], ...] = ()  # fixed debit party; empty: from each payer_fa
    requesting_organisation: tuple[str, str] | None = None  # (identifier type, identifier)
    batch_title: str = "GPO disbursement"


# -- amounts


def to_mmapi_amount(amount: str) -> str:
    """GPO's "125.50" → the spec's "125.5"; exact string work, never a float."""
    try:
        text = format_shortest(parse_amount(amount), 2)
    except InvalidAmount:
        raise TransformError(
            Reason.AMOUNT_INVALID, f"amount {amount[:40]!r} is not a GPO money amount"
        ) from None
    if not MMAPI_AMOUNT.fullmatch(text):  # cannot happen for a GPO amount; kept as a guard
        raise TransformError(Reason.AMOUNT_INVALID, f"amount {amount!r} has no MMAPI form")
    return text


def from_mmapi_amount(text: str) -> str:
    """The spec's "125.5" → "125.50"; refuses more than two decimals instead of rounding."""
    if not MMAPI_AMOUNT.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not an MMAPI amount")
    try:
        return format_amount(parse_units(text, places=2, whole_digits=18))
    except InvalidAmount:
        raise ValueError(f"{text!r} has more than two decimals") from None


# -- parties


def party(fa: str, schemes: Mapping[str, str], *, role: str = "payee") -> list[dict[str, str]]:
    """ "mobile:254700000001@mpesa" → [{"key": "msisdn", "value": "254700000001"}]."""
    scheme, sep, rest = fa.partition(":")
    identifier, at, _provider = rest.rpartition("@")
    reason = Reason.PAYEE_FA_INVALID if role == "payee" else Reason.PAYER_FA_INVALID
    if not sep or not at or not identifier:
        raise TransformError(reason, f"{role} financial address is not scheme:id@provider")
    key = schemes.get(scheme)
    if key is None:
        raise TransformError(reason, f"{role} address scheme {scheme[:32]!r} has no GSMA identifier type")
    if len(identifier) > _TEXT_MAX:
        raise TransformError(reason, f"{role} identifier is longer than {_TEXT_MAX} characters")
    return [{"key": key, "value": identifier}]


# -- requests


def request_transaction(p: RailPayment, options: BodyOptions) -> dict[str, Any]:
    """One `requestTransaction`; raises TransformError when the payment cannot be expressed."""
    if options.debit_party:
        debit = [{"key": k, "value": v} for k, v in options.debit_party]
    else:
        debit = party(p.payer_fa, options.fa_schemes, role="payer")
    if not 0 < len(p.idempotency_key) <= _TEXT_MAX:
        raise TransformError(Reason.RAIL_ERROR, "idempotency key does not fit a transaction reference")
    metadata = [{"key": META_KEY, "value": p.idempotency_key}]
    for key, value in ((META_REFERENCE, p.reference_id), (META_PURPOSE, p.purpose)):
        if value:
            metadata.append({"key": key, "value": value[:_TEXT_MAX]})
    tx: dict[str, Any] = {
        "type": "disbursement",
        "amount": to_mmapi_amount(p.amount),
        "currency": p.currency_code,
        "creditParty": party(p.payee_fa, options.fa_schemes),
        "debitParty": debit,
        "requestingOrganisationTransactionReference": p.idempotency_key,
        "metadata": metadata,
    }
    if p.note:
        tx["descriptionText"] = p.note[:_DESCRIPTION_MAX]
    return tx


def batch_body(transactions: Sequence[dict[str, Any]], options: BodyOptions) -> dict[str, Any]:
    """A `requestBatchTransaction`. No dates in it: the same payments always give the same body."""
    body: dict[str, Any] = {"batchTitle": options.batch_title[:_TEXT_MAX], "transactions": list(transactions)}
    if options.requesting_organisation is not None:
        kind, identifier = options.requesting_organisation
        body["requestingOrganisation"] = {
            "requestingOrganisationIdentifierType": kind,
            "requestingOrganisationIdentifier": identifier,
        }
    return body


def encode(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# -- responses


def transaction_key(item: Mapping[str, Any]) -> str | None:
    """The GPO idempotency key a completion or rejection refers to."""
    ref = item.get("requestingOrganisationTransactionReference")
    if isinstance(ref, str) and ref:
        return ref
    for meta in item.get("metadata") or ():
        if isinstance(meta, Mapping) and meta.get("key") == META_KEY and isinstance(meta.get("value"), str):
            return str(meta["value"])
    return None


def completion_result(item: Mapping[str, Any]) -> RailResult | None:
    """A `responseBatchTransactionCompletion` → SUCCEEDED (None when it names no GPO key)."""
    key = transaction_key(item)
    if key is None:
        return None
    return RailResult(key, Outcome.SUCCEEDED, rail_reference=str(item.get("transactionReference") or ""))


def rejection_result(item: Mapping[str, Any]) -> RailResult | None:
    """A `responseBatchTransactionRejection` → FAILED, or None when it names no GPO key or does not say
    whether the money moved (a duplicate)."""
    key = transaction_key(item)
    if key is None:
        return None
    text = str(item.get("rejectionReason") or "rejected by the provider")
    code = named_error(text)
    if code in UNDECIDED_ERRORS:
        return None
    return RailResult(
        key,
        Outcome.FAILED,
        reason_code=ERROR_REASONS.get(code or "", Reason.RAIL_ERROR),
        reason_message=text[:1024],
        rail_reference=str(item.get("transactionReference") or ""),
    )


def named_error(text: str) -> str | None:
    """The first MMAPI errorCode named in a free-text rejectionReason, e.g. "identifierError: …"."""
    for word in _ERROR_WORD.findall(text):
        code = _ERROR_BY_LOWER.get(word.lower())
        if code is not None:
            return code
    return None


def error_reason(error: Mapping[str, Any]) -> tuple[str, str]:
    """An `errorObject` → (GPO reason code, message) for every payment of a batch the provider refused."""
    code = str(error.get("errorCode") or "")
    category = str(error.get("errorCategory") or "")
    description = str(error.get("errordescription") or "")
    message = f"batch refused by the provider: {category}/{code}" + (
        f": {description}" if description else ""
    )
    return ERROR_REASONS.get(code, Reason.RAIL_ERROR), message[:1024]


def is_error_object(body: Any) -> bool:
    return isinstance(body, Mapping) and isinstance(body.get("errorCategory"), str) and "errorCode" in body


def is_batch_object(body: Any) -> bool:
    return isinstance(body, Mapping) and isinstance(body.get("batchId"), str) and "batchStatus" in body


def batch_id_from_link(link: str) -> str | None:
    """`responseResponse.link` "/batchtransactions/{batchId}" (absolute or not) → the batch id."""
    path = link.split("?", 1)[0].rstrip("/")
    head, _, last = path.rpartition("/")
    return last if head.endswith("batchtransactions") and last else None
