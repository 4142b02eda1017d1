"""SWIFT MT940 customer statements, parsed with the `mt-940` package.

The :86: information of a line carries the references banks add for SEPA-style transfers, either as
ING-style keywords (/EREF/…/PREF/…/RTRN/AC04/) or as German structured fields (?20EREF+…), which the
package parses itself. A return is a reversal of a debit (mark RD), a returned item (type code RTI) or a
line with a return reason (/RTRN/).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

import mt940

from gpo_server.statements.records import EntryRecord, ParsedStatement, StatementInvalid, hundredths

# The package logs the lines it cannot read, account numbers included; GPO's error says what is wrong.
logging.getLogger("mt940").setLevel(logging.CRITICAL)

_KEYWORD = re.compile(r"/(EREF|PREF|RTRN|NTX)/([^/]*)")
_REQUIRED = ("transaction_reference", "account_identification")


def parse(data: bytes) -> list[ParsedStatement]:
    """Every statement of an MT940 file (one per :20: … -). Raises StatementInvalid."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise StatementInvalid("mt940: the file is not text") from None
    if ":20:" not in text or (":61:" not in text and ":62F:" not in text):
        raise StatementInvalid("mt940: no statement found (a :20: reference and :61:/:62F: lines)")
    statements = []
    for number, block in enumerate(_blocks(text), 1):
        statements.append(_statement(number, block))
    if not statements:
        raise StatementInvalid("mt940: no statement found")
    return statements


def _blocks(text: str) -> list[str]:
    """The file's statements: a new one at each :20: (the package reads one statement's tags at a time)."""
    body = text.replace("\r\n", "\n")
    starts = [m.start() for m in re.finditer(r"(?m)^:20:", body)]
    return [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)], strict=True)]


def _statement(number: int, block: str) -> ParsedStatement:
    transactions = mt940.models.Transactions()
    try:
        transactions.parse(block)
    except RuntimeError as exc:
        # The package's "Unable to parse" carries the tag and the text it could not read.
        tag, text = (exc.args[1], exc.args[2]) if len(exc.args) == 3 else (None, "")
        where = f":{tag.id}: line {str(text)[:40]!r}" if tag is not None else str(exc)[:200]
        raise StatementInvalid(f"mt940: statement {number}: cannot read the {where}") from None
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise StatementInvalid(f"mt940: statement {number}: {str(exc)[:200]}") from None
    head: dict[str, Any] = transactions.data
    for name in _REQUIRED:
        if not str(head.get(name) or "").strip():
            raise StatementInvalid(f"mt940: statement {number} has no {name.replace('_', ' ')}")
    if "final_closing_balance" not in head:
        raise StatementInvalid(f"mt940: statement {number} has no closing balance (:62F:)")
    statement_id = str(head["transaction_reference"]).strip()
    if head.get("statement_number"):
        statement_id += f"/{head['statement_number']}"
        if head.get("sequence_number"):
            statement_id += f"/{head['sequence_number']}"
    entries = tuple(_entry(statement_id, n, t.data) for n, t in enumerate(transactions, 1))
    return ParsedStatement(
        format="mt940",
        statement_id=statement_id,
        account=str(head["account_identification"]).strip(),
        created=None,
        entries=entries,
    )


def _entry(statement_id: str, number: int, line: dict[str, Any]) -> EntryRecord:
    where = f"statement {statement_id} line {number}"
    amount = line.get("amount")
    if amount is None:
        raise StatementInvalid(f"mt940: {where} has no amount")
    status = str(line.get("status") or "")
    currency = str(getattr(amount, "currency", "") or line.get("currency") or "")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise StatementInvalid(f"mt940: {where} has no currency (an opening balance :60F: gives it)")
    details = " ".join(str(line.get(k) or "") for k in ("extra_details", "transaction_details", "purpose"))
    keywords: dict[str, str] = {}
    for key, value in _KEYWORD.findall(details):
        keywords.setdefault(key, value.strip())
    end_to_end = keywords.get("EREF") or str(line.get("end_to_end_reference") or "").strip()
    reason = keywords.get("RTRN", "")
    credit = status in ("C", "RD")  # RD: a debit reversed, so money came back
    booking = line.get("entry_date") or line.get("date")
    return EntryRecord(
        number=number,
        amount_hundredths=hundredths(abs(amount.amount), f"mt940: {where}"),
        currency=currency,
        credit=credit,
        booked=True,
        booking_date=dt.date(booking.year, booking.month, booking.day) if booking else None,
        end_to_end_ids=(end_to_end,) if end_to_end and end_to_end != "NOTPROVIDED" else (),
        servicer_reference=str(line.get("bank_reference") or "").strip(),
        batch_reference=keywords.get("PREF", ""),
        batch_count=int(keywords["NTX"]) if keywords.get("NTX", "").isdigit() else 0,
        returned=credit and (status == "RD" or str(line.get("id") or "").endswith("RTI") or bool(reason)),
        return_reason=reason[:200],
    )
