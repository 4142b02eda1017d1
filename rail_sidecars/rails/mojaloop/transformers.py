"""GPO payments <-> FSPIOP v1.1 bodies, ids, amounts, headers and error codes. Pure functions, no I/O.

FSPIOP ids are UUIDs (CorrelationId). GPO's idempotency key is a UUIDv5 already, so it is the transferId;
every other id is derived from the transfer ids with UUIDv5, so a retry after a crash sends the same ids
and the hub answers for the existing bulk instead of paying again.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from gpo_kernel.money import format_shortest, parse_units
from rail_sidecars.rails.base import Outcome, RailPayment

CORRELATION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://gpo.dev/rails/mojaloop")
API_VERSION = "1.1"

# -- ids


def transfer_id_for(idempotency_key: str) -> str:
    """The key itself when it is a CorrelationId (GPO's keys are), otherwise a UUIDv5 of it."""
    key = idempotency_key.lower()
    return key if CORRELATION_ID.match(key) else str(uuid.uuid5(_NAMESPACE, "transfer:" + idempotency_key))


def quote_id_for(transfer_id: str, attempt: int = 0) -> str:
    """The quoteId of a transfer; a quote asked again after one expired (attempt 1, 2, ...) gets a new one."""
    suffix = f":{attempt}" if attempt else ""
    return str(uuid.uuid5(_NAMESPACE, "quote:" + transfer_id + suffix))


def requote_id(bulk_quote: str, attempt: int) -> str:
    """The bulkQuoteId of the attempt-th quote of a bulk after its earlier quote expired."""
    return bulk_quote if attempt == 0 else str(uuid.uuid5(_NAMESPACE, f"requote:{bulk_quote}:{attempt}"))


def transaction_id_for(transfer_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "transaction:" + transfer_id))


def bulk_quote_id(payer_fsp: str, payee_fsp: str, transfer_ids: Iterable[str]) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"bulkQuote:{payer_fsp}|{payee_fsp}|" + ",".join(sorted(transfer_ids))))


def bulk_transfer_id(quote_id: str, transfer_ids: Iterable[str]) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"bulkTransfer:{quote_id}|" + ",".join(sorted(transfer_ids))))


# -- amounts: integers of ten-thousandths (FSPIOP allows 4 decimals), never floats

SCALE = 10_000


def to_units(amount: str) -> int:
    """Ten-thousandths of a GPO ("125.50") or FSPIOP ("125.5", "100") amount; ValueError (InvalidAmount)
    if it is neither."""
    return parse_units(amount, places=4, whole_digits=18)


def fspiop_amount(units: int) -> str:
    """The FSPIOP Amount form: no trailing zeros, no "." without decimals ("125.5", "100", "0.05")."""
    return format_shortest(units, 4)


def gpo_amount(units: int) -> str:
    """GPO's two-decimal form; ValueError if the amount has more than two decimals."""
    whole, fraction = divmod(units, SCALE)
    if fraction % 100:
        raise ValueError("amount has more than two decimals")
    return f"{whole}.{fraction // 100:02d}"


def to_fspiop_amount(amount: str) -> str:
    return fspiop_amount(to_units(amount))


def money(amount_units: int, currency: str) -> dict[str, str]:
    return {"currency": currency, "amount": fspiop_amount(amount_units)}


# -- financial addresses and parties


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str
    identifier: str
    provider: str


def parse_fa(fa: str) -> Address | None:
    """ "mobile:254700000001@payeefsp1" -> Address("mobile", "254700000001", "payeefsp1")."""
    scheme, colon, rest = fa.partition(":")
    identifier, at, provider = rest.rpartition("@")
    if not colon or not scheme:
        return None
    if not at:
        identifier, provider = rest, ""
    return Address(scheme.lower(), identifier, provider) if identifier else None


def payee_fsp_of(address: Address, fsp_by_provider: Mapping[str, str]) -> str | None:
    fsp = fsp_by_provider.get(address.provider, address.provider)
    return fsp if 1 <= len(fsp) <= 32 else None


def party_id_info(address: Address, id_types: Mapping[str, str], fsp_id: str = "") -> dict[str, Any] | None:
    id_type = id_types.get(address.scheme)
    if id_type is None or len(address.identifier) > 128:
        return None
    info: dict[str, Any] = {"partyIdType": id_type, "partyIdentifier": address.identifier}
    if fsp_id:
        info["fspId"] = fsp_id
    return info


def payer_party(payer_fa: str, id_types: Mapping[str, str], payer_fsp: str) -> dict[str, Any]:
    """The payer: its address' scheme decides the type; an unknown scheme is an ACCOUNT_ID."""
    address = parse_fa(payer_fa) or Address("account", payer_fa or payer_fsp, "")
    info = party_id_info(address, id_types, payer_fsp) or {
        "partyIdType": "ACCOUNT_ID",
        "partyIdentifier": address.identifier[:128],
        "fspId": payer_fsp,
    }
    return {"partyIdInfo": info}


# -- headers


def content_type(resource: str) -> str:
    return f"application/vnd.interoperability.{resource}+json;version={API_VERSION}"


def http_date(now: datetime | None = None) -> str:
    """RFC 7231 IMF-fixdate, e.g. "Tue, 15 Nov 1994 08:12:31 GMT"."""
    return format_datetime(now or datetime.now(UTC), usegmt=True)


def fspiop_headers(resource: str, source: str, destination: str = "") -> dict[str, str]:
    headers = {
        "Accept": content_type(resource),
        "Content-Type": content_type(resource),
        "Date": http_date(),
        "FSPIOP-Source": source,
    }
    if destination:
        headers["FSPIOP-Destination"] = destination
    return headers


def parse_fspiop_datetime(text: Any) -> datetime | None:
    """An FSPIOP DateTime ("2016-05-24T08:38:08.699Z" or with an offset), None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def fspiop_datetime(moment: datetime) -> str:
    """The FSPIOP DateTime form: milliseconds and Z, e.g. "2016-05-24T08:38:08.699Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- requests


@dataclass(frozen=True, slots=True)
class Planned:
    """One payment on its way into a bulk: its FSPIOP ids and its amount in ten-thousandths."""

    payment: RailPayment
    transfer_id: str
    payee: dict[str, Any]  # the FSPIOP Party
    units: int
    attempt: int = 0  # how many of its quotes expired before this one

    @property
    def quote_id(self) -> str:
        return quote_id_for(self.transfer_id, self.attempt)


def payee_party(partyid: dict[str, Any], name: str) -> dict[str, Any]:
    party: dict[str, Any] = {"partyIdInfo": partyid}
    if name.strip():
        party["name"] = name.strip()[:128]
    return party


def transaction_type(scenario: str, initiator_type: str, sub_scenario: str = "") -> dict[str, str]:
    kind = {"scenario": scenario, "initiator": "PAYER", "initiatorType": initiator_type}
    if sub_scenario:
        kind["subScenario"] = sub_scenario
    return kind


def bulk_quote_request(
    quote_id: str, payer: dict[str, Any], items: Sequence[Planned], kind: dict[str, str]
) -> dict[str, Any]:
    """POST /bulkQuotes. No `expiration`: it is optional, and leaving it out keeps a resend identical."""
    quotes = []
    for item in items:
        quote: dict[str, Any] = {
            "quoteId": item.quote_id,
            "transactionId": transaction_id_for(item.transfer_id),
            "payee": item.payee,
            "amountType": "RECEIVE",  # the payee gets exactly the GPO amount; fees are on the payer
            "amount": money(item.units, item.payment.currency_code),
            "transactionType": kind,
        }
        if item.payment.note.strip():
            quote["note"] = item.payment.note.strip()[:128]
        if item.payment.reference_id:
            quote["extensionList"] = {
                "extension": [{"key": "gpoReferenceId", "value": item.payment.reference_id[:128]}]
            }
        quotes.append(quote)
    return {"bulkQuoteId": quote_id, "payer": payer, "individualQuotes": quotes}


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """What the payee FSP quoted for one transfer: the transfer must carry exactly these."""

    transfer_amount: dict[str, str]
    ilp_packet: str
    condition: str


def bulk_transfer_request(
    transfer_bulk_id: str,
    quote_bulk_id: str,
    payer_fsp: str,
    payee_fsp: str,
    terms: Mapping[str, QuoteTerms],
    expiration: datetime,
) -> dict[str, Any]:
    return {
        "bulkTransferId": transfer_bulk_id,
        "bulkQuoteId": quote_bulk_id,
        "payerFsp": payer_fsp,
        "payeeFsp": payee_fsp,
        "individualTransfers": [
            {
                "transferId": transfer_id,
                "transferAmount": t.transfer_amount,
                "ilpPacket": t.ilp_packet,
                "condition": t.condition,
            }
            for transfer_id, t in sorted(terms.items())
        ],
        "expiration": fspiop_datetime(expiration),
    }


# -- errors


@dataclass(frozen=True, slots=True)
class FspiopError:
    code: str
    description: str

    @property
    def definite(self) -> bool:
        """Whether the error proves the request was refused: 1xxx (communication) and 2xxx (server) may
        hide a processed request, and 3106 (modified request) means the id already exists."""
        return self.code[:1] not in {"1", "2"} and self.code != "3106"

    @property
    def not_found(self) -> bool:
        """The id is unknown to the hub (answer to a GET): 3208 transfer, 3209 bulk quote, 3210 bulk
        transfer, 3205 quote."""
        return self.code in {"3205", "3208", "3209", "3210"}

    @property
    def reason_code(self) -> str:
        return reason_for(self.code)

    @property
    def message(self) -> str:
        return f"FSPIOP {self.code}: {self.description}"[:1024]


# FSPIOP v1.1 error codes (API Definition 7.6) -> G2P Connect style reason codes.
_REASONS: dict[str, str] = {
    "3201": "rjct.payee_fa.invalid",  # destination FSP error: no such payee FSP
    "3203": "rjct.payee_fa.invalid",  # payee FSP id not found
    "3204": "rjct.payee_fa.invalid",  # party not found
    "3202": "rjct.payer_fa.invalid",  # payer FSP id not found
    "4001": "rjct.payer.insufficient_funds",  # payer FSP insufficient liquidity
    "4103": "rjct.currency_code.invalid",  # payer unsupported currency
    "5106": "rjct.currency_code.invalid",  # payee unsupported currency
    "4200": "rjct.amount.limit_exceeded",  # payer limit error
    "5200": "rjct.amount.limit_exceeded",  # payee limit error
    "4300": "rjct.payer_fa.blocked",  # payer permission error
    "4400": "rjct.payer_fa.blocked",  # payer blocked
    "5300": "rjct.payee_fa.blocked",  # payee permission error
    "5400": "rjct.payee_fa.blocked",  # payee blocked
}


def reason_for(code: str) -> str:
    if code in _REASONS:
        return _REASONS[code]
    if code.startswith("51"):  # 5100-5105: the payee or its FSP rejected the quote or transaction
        return "rjct.payee_fa.rejected"
    return "rjct.rail.error"


def error_of(body: Any) -> FspiopError | None:
    """The ErrorInformation of an ErrorInformationObject (or ErrorInformationResponse) body."""
    info = body.get("errorInformation") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return None
    code = str(info.get("errorCode", ""))
    if not re.fullmatch(r"[1-9]\d{3}", code):
        code = "2000"  # unreadable: a generic server error, which is never taken as definite
    return FspiopError(code, str(info.get("errorDescription", ""))[:128])


# -- responses


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason_code: str = ""
    reason_message: str = ""


def read_quotes(
    body: Mapping[str, Any], items: Sequence[Planned], max_fee_units: int
) -> tuple[dict[str, QuoteTerms], dict[str, Verdict]]:
    """PUT /bulkQuotes/{ID} -> (terms by transfer id, refusals by transfer id).

    An item the payee FSP refused, left out of the results, or quoted in a way GPO cannot pay exactly is
    refused here and never sent as a transfer; one with a communication or server error (1xxx, 2xxx) is
    in neither: undecided."""
    results = {r.get("quoteId"): r for r in body.get("individualQuoteResults") or [] if isinstance(r, dict)}
    terms: dict[str, QuoteTerms] = {}
    refused: dict[str, Verdict] = {}
    for item in items:
        result = results.get(item.quote_id)
        if result is None:
            refused[item.transfer_id] = Verdict(Outcome.FAILED, "rjct.rail.error", "no quote result")
            continue
        error = error_of(result)
        if error is not None:
            if error.definite:  # a 1xxx/2xxx quote error stays undecided: the chunk comes back
                refused[item.transfer_id] = Verdict(Outcome.FAILED, error.reason_code, error.message)
            continue
        verdict, quoted = _check_quote(result, item, max_fee_units)
        if verdict is not None:
            refused[item.transfer_id] = verdict
        elif quoted is not None:
            terms[item.transfer_id] = quoted
    return terms, refused


def _check_quote(
    result: Mapping[str, Any], item: Planned, max_fee_units: int
) -> tuple[Verdict | None, QuoteTerms | None]:
    packet, condition = result.get("ilpPacket"), result.get("condition")
    if not isinstance(packet, str) or not isinstance(condition, str) or not packet or not condition:
        return Verdict(Outcome.FAILED, "rjct.rail.error", "quote without ilpPacket or condition"), None
    transfer_amount = result.get("transferAmount") or money(item.units, item.payment.currency_code)
    try:
        currency, units = str(transfer_amount["currency"]), to_units(str(transfer_amount["amount"]))
    except (KeyError, TypeError, ValueError):
        return Verdict(Outcome.FAILED, "rjct.rail.error", "quote with an unreadable transferAmount"), None
    if currency != item.payment.currency_code:
        return Verdict(Outcome.FAILED, "rjct.currency_code.invalid", f"quoted in {currency}"), None
    fee = units - item.units
    if not 0 <= fee <= max_fee_units:
        message = f"quoted transferAmount {fspiop_amount(units)} for amount {fspiop_amount(item.units)}"
        return Verdict(Outcome.FAILED, "rjct.amount.limit_exceeded", message), None
    return None, QuoteTerms(money(units, currency), packet, condition)


FINAL_BULK_STATES = frozenset({"COMPLETED", "REJECTED"})


def read_transfers(
    body: Mapping[str, Any], conditions: Mapping[str, str], verify_fulfilment: bool = True
) -> dict[str, Verdict]:
    """PUT /bulkTransfers/{ID} -> definite verdicts by transfer id, for the ids in `conditions` only.

    A result with a fulfilment is SUCCEEDED, one with errorInformation FAILED; a REJECTED bulk fails the
    transfers it does not list. Anything else stays out (pending or unknown: not an outcome)."""
    state = body.get("bulkTransferState")
    if state not in FINAL_BULK_STATES:
        return {}
    verdicts: dict[str, Verdict] = {}
    for result in body.get("individualTransferResults") or []:
        transfer_id = result.get("transferId") if isinstance(result, dict) else None
        if not isinstance(transfer_id, str) or transfer_id not in conditions:
            continue
        error = error_of(result)
        fulfilment = result.get("fulfilment")
        if error is not None:
            verdicts[transfer_id] = Verdict(Outcome.FAILED, error.reason_code, error.message)
        elif isinstance(fulfilment, str) and (
            not verify_fulfilment or fulfils(fulfilment, conditions[transfer_id])
        ):
            verdicts[transfer_id] = Verdict(Outcome.SUCCEEDED)
    if state == "REJECTED":
        for transfer_id in conditions:
            verdicts.setdefault(
                transfer_id, Verdict(Outcome.FAILED, "rjct.rail.error", "bulk transfer REJECTED by payee FSP")
            )
    return verdicts


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def condition_of(fulfilment: str) -> str:
    """The ILP condition a fulfilment meets: base64url(SHA-256(fulfilment bytes))."""
    return b64url(hashlib.sha256(_b64url_decode(fulfilment)).digest())


def fulfils(fulfilment: str, condition: str) -> bool:
    """An empty condition (unknown, e.g. in a look-up after a restart) is not checked."""
    if not condition:
        return True
    try:
        return condition_of(fulfilment) == condition
    except ValueError:
        return False
