"""Exact money. Amounts travel as decimal strings and are stored as integer hundredths; never floats.

Parsing and formatting live in gpo_kernel.money, shared with the sidecars; this module adds the batch rules.
"""

from __future__ import annotations

from gpo_kernel.money import SCALE, InvalidAmount, format_amount, parse_amount, parse_units

__all__ = [
    "MAX_BATCH_TOTAL_HUNDREDTHS",
    "SCALE",
    "InvalidAmount",
    "format_amount",
    "parse_amount",
    "parse_total",
]

# The most one batch may carry, all its amounts (in every currency) added up: 999,999,999,999,999.99, in
# hundredths. Every sum GPO keeps or computes (a batch's received total, its totals by status and currency)
# is at most this, so no sum can leave the signed 64-bit range (about 9.2 * 10^18) of a BIGINT, of
# SQLite's INTEGER or of PostgreSQL's SUM: intake refuses a payment that would pass it.
MAX_BATCH_TOTAL_HUNDREDTHS = 10**17 - 1


def parse_total(text: str) -> int:
    """Like parse_amount but for declared totals, which may exceed 13 integer digits (up to the batch
    maximum, MAX_BATCH_TOTAL_HUNDREDTHS) and may omit the decimals."""
    try:
        return parse_units(text, places=2, whole_digits=15)
    except InvalidAmount:
        raise InvalidAmount(
            f"total {text[:40]!r} is not a decimal of at most 15 integer and 2 fraction digits "
            f"(a batch carries at most {format_amount(MAX_BATCH_TOTAL_HUNDREDTHS)})"
        ) from None
