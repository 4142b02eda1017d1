"""CSV cells and the per-batch report that ExportPayments streams (issue 16, item 3).

Every cell goes through `csv_cell`, which `gpo payments --csv` uses too: a cell a spreadsheet would read
as a formula is prefixed with ' (OWASP, CSV injection)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from gpo_server.domain.money import format_amount

# OWASP CSV injection: a cell a spreadsheet would read as a formula starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")

# Every column a CSV of payments has, in the one order both CSVs keep: `gpo payments --csv` (the CLI's
# CSV_COLUMNS) and the server's report each take the ones they carry.
PAYMENT_CSV_COLUMNS = (
    "reference_id",
    "payee_fa",
    "payee_name",
    "amount",
    "currency_code",
    "status",
    "reason_code",
    "reason_message",
    "rail",
    "rail_reference",
    "idempotency_key",
    "attempts",
    "retries",
    "attention_reason",
    "update_time",
    "batch_create_time",
)
# The report leaves out the payee and the idempotency key; it adds the batch's create time.
REPORT_COLUMNS = tuple(
    c for c in PAYMENT_CSV_COLUMNS if c not in ("payee_fa", "payee_name", "idempotency_key")
)


def csv_cell(value: object) -> str:
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _time(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite returns naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def report_lines(rows: Iterable[Any], batch_create_time: dt.datetime, *, header: bool) -> str:
    """CSV text (CRLF lines) for stored payment rows, with the header line first when `header`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(REPORT_COLUMNS)
    for row in rows:
        m = row._mapping
        amount = m["amount_hundredths"]
        values: Sequence[object] = (
            m["reference_id"],
            format_amount(amount) if amount is not None else "",
            m["currency_code"],
            str(m["status"]).upper(),
            m["reason_code"],
            m["reason_message"],
            m["rail"] or "",
            m["rail_reference"],
            m["attempts"],
            m["retries"],
            m["attention_reason"],
            _time(m["update_time"]),
            _time(batch_create_time),
        )
        writer.writerow([csv_cell(v) for v in values])
    return out.getvalue()
