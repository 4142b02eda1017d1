"""Exact money: decimal strings <-> integer units (hundredths for GPO amounts); never floats.

The one parser of amounts on both sides of the rail contract. Its grammar is ASCII digits, optionally a
point and more ASCII digits, nothing else: no sign, exponent, separator, whitespace or NaN. Python's \\d
and str.isdigit() accept other scripts' digits (full-width U+FF11 "1", Arabic-Indic U+0661) and "$" a
trailing newline, so neither is used; lengths are checked before int(), so no input costs more than a
short string does.
"""

from __future__ import annotations

# GPO amounts are G2P Connect's ^\d{1,13}\.\d{1,2}$ (ASCII digits): hundredths of at most 10^13 - 0.01,
# which fit a signed 64-bit integer.
SCALE = 100
AMOUNT_WHOLE_DIGITS = 13
AMOUNT_PLACES = 2

_ASCII_DIGITS = frozenset("0123456789")


class InvalidAmount(ValueError):
    """The text is not an amount of the form asked for."""


def _digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and _ASCII_DIGITS.issuperset(text)


def parse_units(text: str, *, places: int, whole_digits: int, point_required: bool = False) -> int:
    """The amount in units of 10^-places, e.g. parse_units("125.5", places=4, whole_digits=18) -> 1255000.

    At most `whole_digits` digits before the point and `places` after it (more decimals are refused,
    never rounded); without `point_required` an integer such as "100" is an amount too. Raises InvalidAmount.
    """
    if len(text) <= whole_digits + 1 + places:
        whole, point, fraction = text.partition(".")
        if _digits(whole, whole_digits) and (_digits(fraction, places) if point else not point_required):
            return int(whole + fraction.ljust(places, "0"))  # "12" "5" -> 1250 at two places
    form = f"\\d{{1,{whole_digits}}}" + (
        f"\\.\\d{{1,{places}}}" if point_required else f"(\\.\\d{{1,{places}}})?"
    )
    raise InvalidAmount(f"amount {text[:40]!r} does not match ^{form}$ (ASCII digits)")


def parse_amount(text: str) -> int:
    """A GPO amount in hundredths, e.g. "125.5" -> 12550. Raises InvalidAmount."""
    return parse_units(text, places=AMOUNT_PLACES, whole_digits=AMOUNT_WHOLE_DIGITS, point_required=True)


def format_amount(hundredths: int) -> str:
    """The canonical decimal string of an amount in hundredths, e.g. 12550 -> "125.50"."""
    sign = "-" if hundredths < 0 else ""
    whole, fraction = divmod(abs(hundredths), SCALE)
    return f"{sign}{whole}.{fraction:02d}"


def format_shortest(units: int, places: int) -> str:
    """The shortest exact form of units of 10^-places, as FSPIOP and GSMA MMAPI want it: no trailing zeros,
    no point without decimals (format_shortest(1255000, 4) -> "125.5", 1000000 -> "100")."""
    if units < 0:
        raise InvalidAmount("negative amount")
    whole, fraction = divmod(units, 10**places)
    digits = f"{fraction:0{places}d}".rstrip("0") if places else ""
    return f"{whole}.{digits}" if digits else str(whole)
