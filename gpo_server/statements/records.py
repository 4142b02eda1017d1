"""What a parsed bank statement holds, whatever its format (camt053.py, mt940.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from gpo_kernel.money import InvalidAmount, parse_units

# ISO 20022 amounts have at most 18 digits; GPO keeps integer hundredths in a signed 64-bit column.
MAX_WHOLE_DIGITS = 16


class StatementInvalid(ValueError):
    """The statement cannot be read: what is wrong, and where. Nothing of it is stored."""


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """One booking on the account (a camt.053 Ntry, an MT940 :61: line with its :86:)."""

    number: int  # 1-based position in its statement
    amount_hundredths: int  # always positive; `credit` says which way
    currency: str
    credit: bool
    booked: bool  # camt.053 status BOOK; MT940 lines are booked
    booking_date: dt.date | None
    # A single booking's end-to-end id, or the transaction details of a batch booking.
    end_to_end_ids: tuple[str, ...]
    servicer_reference: str  # the bank's own reference (AcctSvcrRef, MT940 //bank reference)
    batch_reference: str  # a batch booking's PmtInfId (camt.053 Btch, MT940 /PREF/)
    batch_count: int  # transactions the batch booking says it holds; 0: not said
    returned: bool  # money that came back: a return or reversal of a debit
    return_reason: str  # the return's reason code (e.g. AC04) and text, "" when none given


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    format: str  # "camt.053" or "mt940"
    statement_id: str  # the bank's id of the statement (Stmt/Id; MT940 :20: and :28C:)
    account: str  # IBAN or other account id the statement is for
    created: dt.datetime | None
    entries: tuple[EntryRecord, ...]


def hundredths(value: str | Decimal, where: str) -> int:
    """An exact amount in hundredths; more than two non-zero decimals or a sign is an error, never rounded."""
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise StatementInvalid(f"{where}: amount {text[:40]!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise StatementInvalid(f"{where}: amount {text[:40]!r} is not a positive amount")
    plain = format(number.normalize(), "f") if number else "0"
    try:
        return parse_units(plain, places=2, whole_digits=MAX_WHOLE_DIGITS)
    except InvalidAmount:
        raise StatementInvalid(
            f"{where}: amount {text[:40]!r} has more than two decimals or {MAX_WHOLE_DIGITS} digits"
        ) from None
