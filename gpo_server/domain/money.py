"""Exact money. Amounts travel as decimal strings and are stored as integer hundredths; never floats."""

from __future__ import annotations

import re

# G2P Connect's amount pattern. ASCII digits only: Python's \d would accept full-width and other digits.
_AMOUNT = re.compile(r"[0-9]{1,13}\.[0-9]{1,2}", re.ASCII)

# Hundredths fit every amount the pattern allows (at most 10^13 - 0.01) in a signed 64-bit integer.
SCALE = 100

# The most one batch may carry, all its amounts (in every currency) added up: 999,999,999,999,999.99, in
# hundredths. Every sum GPO keeps or computes (a batch's received total, its totals by status and currency)
# is at most this, so no sum can leave the signed 64-bit range (about 9.2 * 10^18) of a BIGINT, of
# SQLite's INTEGER or of PostgreSQL's SUM: intake refuses a payment that would pass it.
MAX_BATCH_TOTAL_HUNDREDTHS = 10**17 - 1


class InvalidAmount(ValueError):
    """The text is not an amount in the G2P Connect form."""


def parse_amount(text: str) -> int:
    """Returns the amount in hundredths, e.g. "125.5" -> 12550. Raises InvalidAmount."""
    if not _AMOUNT.fullmatch(text):
        raise InvalidAmount(f"amount {text[:40]!r} does not match ^\\d{{1,13}}\\.\\d{{1,2}}$")
    whole, fraction = text.split(".")
    return int(whole) * SCALE + int(fraction.ljust(2, "0"))


def format_amount(hundredths: int) -> str:
    """Returns the canonical decimal string of an amount in hundredths, e.g. 12550 -> "125.50"."""
    sign = "-" if hundredths < 0 else ""
    whole, fraction = divmod(abs(hundredths), SCALE)
    return f"{sign}{whole}.{fraction:02d}"


def parse_total(text: str) -> int:
    """Like parse_amount but for declared totals, which may exceed 13 integer digits (up to the batch
    maximum, MAX_BATCH_TOTAL_HUNDREDTHS)."""
    if not re.fullmatch(r"[0-9]{1,15}(\.[0-9]{1,2})?", text, re.ASCII):
        raise InvalidAmount(
            f"total {text[:40]!r} is not a decimal of at most 15 integer and 2 fraction digits "
            f"(a batch carries at most {format_amount(MAX_BATCH_TOTAL_HUNDREDTHS)})"
        )
    whole, _, fraction = text.partition(".")
    return int(whole) * SCALE + int(fraction.ljust(2, "0") or "0")
