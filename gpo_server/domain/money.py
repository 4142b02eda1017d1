"""Exact money. Amounts travel as decimal strings and are stored as integer hundredths; never floats."""

from __future__ import annotations

import re

# G2P Connect's amount pattern. ASCII digits only: Python's \d would accept full-width and other digits.
_AMOUNT = re.compile(r"[0-9]{1,13}\.[0-9]{1,2}", re.ASCII)

# Hundredths fit every amount the pattern allows (at most 10^13 - 0.01) in a signed 64-bit integer.
SCALE = 100


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
    """Like parse_amount but for declared totals, which may exceed 13 integer digits."""
    if not re.fullmatch(r"[0-9]{1,18}(\.[0-9]{1,2})?", text, re.ASCII):
        raise InvalidAmount(f"total {text[:40]!r} is not a decimal with at most 2 fraction digits")
    whole, _, fraction = text.partition(".")
    return int(whole) * SCALE + int(fraction.ljust(2, "0") or "0")
