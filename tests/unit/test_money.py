"""Exact money: amounts as G2P Connect decimal strings <-> integer hundredths, and payable currencies."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gpo_kernel.currencies import MINOR_UNITS, fits_minor_units, is_payable_currency
from gpo_server.domain.money import InvalidAmount, format_amount, parse_amount, parse_total

# The G2P Connect amount pattern, ASCII only. fullmatch (not "$") so a trailing "\n" cannot sneak through.
G2P_AMOUNT = re.compile(r"[0-9]{1,13}\.[0-9]{1,2}", re.ASCII)
MAX_HUNDREDTHS = 10**15 - 1  # 9999999999999.99


# --- parse_amount -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hundredths"),
    [
        ("125.5", 12550),
        ("125.50", 12550),
        ("125.05", 12505),
        ("0.01", 1),
        ("0.1", 10),
        ("0.10", 10),
        ("0.00", 0),
        ("1.00", 100),
        ("0000000000001.00", 100),
        ("1234567890123.45", 123456789012345),
        ("9999999999999.99", MAX_HUNDREDTHS),
    ],
)
def test_parse_amount_examples(text: str, hundredths: int) -> None:
    value = parse_amount(text)
    assert value == hundredths
    assert type(value) is int


@pytest.mark.parametrize(
    "text",
    [
        "-1.00",
        "+1.00",
        "1e5",
        "1E5",
        "1.0e2",
        "0.001",
        "1.999",
        "\uff11\uff12.\uff10\uff10",  # full-width digits
        "\u0661\u0662.\u0660\u0660",  # Arabic-Indic digits
        "\u06f1\u06f2.\u06f0\u06f0",  # Extended Arabic-Indic (Persian) digits
        "\u0967\u0968.\u0966\u0966",  # Devanagari digits
        "12345678901234.00",  # 14 integer digits
        "10000000000000.00",
        "",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        "-0.00",
        " 1.00",
        "1.00 ",
        "1.00\n",
        "\n1.00",
        "1.00\x00",
        "1",
        "1.",
        ".5",
        ".",
        "1,00",
        "1,000.00",
        "1_000.00",
        "1.0.0",
        "0x10.00",
        "\uff11.00",
        "1.\u0660\u0660",
    ],
)
def test_parse_amount_rejects_hostile_input(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_amount(text)


def test_parse_amount_rejects_integer_without_decimals() -> None:
    # G2P Connect's pattern requires a decimal point; "1" is not an amount even though it is a number.
    with pytest.raises(InvalidAmount, match="does not match"):
        parse_amount("1")


def test_invalid_amount_is_a_value_error() -> None:
    assert issubclass(InvalidAmount, ValueError)


def test_invalid_amount_message_truncates_long_input() -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount("9" * 10_000)
    assert len(str(info.value)) < 200


# --- format_amount ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hundredths", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (5, "0.05"),
        (10, "0.10"),
        (99, "0.99"),
        (100, "1.00"),
        (12550, "125.50"),
        (123456789012345, "1234567890123.45"),
        (MAX_HUNDREDTHS, "9999999999999.99"),
        (-150, "-1.50"),
        (-1, "-0.01"),
    ],
)
def test_format_amount_examples(hundredths: int, text: str) -> None:
    assert format_amount(hundredths) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("125.5", "125.50"), ("0.1", "0.10"), ("007.25", "7.25"), ("1.05", "1.05"), ("0.00", "0.00")],
)
def test_parse_then_format_is_canonical(text: str, canonical: str) -> None:
    assert format_amount(parse_amount(text)) == canonical
    assert parse_amount(canonical) == parse_amount(text)


# --- properties ---------------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=MAX_HUNDREDTHS))
@example(1)
@example(99)
@example(100)
@example(MAX_HUNDREDTHS)
def test_format_then_parse_round_trips_exactly(hundredths: int) -> None:
    text = format_amount(hundredths)
    assert G2P_AMOUNT.fullmatch(text)
    assert parse_amount(text) == hundredths
    assert Decimal(text) * 100 == hundredths


@given(st.from_regex(G2P_AMOUNT, fullmatch=True))
def test_every_pattern_string_parses_to_its_exact_value(text: str) -> None:
    assert parse_amount(text) == Decimal(text) * 100


# Near-misses around the pattern: signs, exponents, foreign digits, separators, whitespace, extra digits.
_near_miss = st.from_regex(
    re.compile(
        r"[ +\-]?[0-9\u0660-\u0669\uff10-\uff19]{0,15}[.,eE]?[0-9\u0660-\u0669\uff10-\uff19]{0,4}[\s\x00]?"
    ),
    fullmatch=True,
)
_candidates = st.one_of(st.text(), st.from_regex(G2P_AMOUNT, fullmatch=True), _near_miss)


@given(_candidates)
@example("1.00\n")
@example("\uff11\uff12.\uff10\uff10")
@example("1")
def test_anything_parse_accepts_matches_the_ascii_pattern(text: str) -> None:
    try:
        value = parse_amount(text)
    except InvalidAmount:
        assert G2P_AMOUNT.fullmatch(text) is None
        return
    assert text.isascii()
    assert G2P_AMOUNT.fullmatch(text) is not None
    assert re.fullmatch(r"^[0-9]{1,13}\.[0-9]{1,2}$", text, re.ASCII) is not None
    assert set(text) <= set("0123456789.")
    assert 0 <= value <= MAX_HUNDREDTHS


@given(st.text())
@example("")
@example("\ud800")
@example("9" * 100_000)
def test_arbitrary_text_raises_only_invalid_amount(text: str) -> None:
    try:
        parse_amount(text)
    except InvalidAmount:
        pass  # any other exception type fails the test


@given(st.text(), st.text())
def test_arbitrary_totals_raise_only_invalid_amount(whole: str, fraction: str) -> None:
    try:
        parse_total(f"{whole}.{fraction}")
    except InvalidAmount:
        pass


# --- parse_total --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hundredths"),
    [
        ("1", 100),
        ("0", 0),
        ("1.5", 150),
        ("1.05", 105),
        ("12345678901234", 1234567890123400),  # totals may exceed 13 integer digits
        ("999999999999999.99", 99999999999999999),  # the most a batch may carry (MAX_BATCH_TOTAL_HUNDREDTHS)
    ],
)
def test_parse_total_examples(text: str, hundredths: int) -> None:
    assert parse_total(text) == hundredths


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.",
        ".5",
        "-1",
        "+1",
        "1.001",
        "1e5",
        "NaN",
        "\uff11\uff12",
        "\u0661\u0662",
        " 1",
        "1\n",
        "1" * 19,
        "1" * 16,  # more than a batch may carry: its hundredths would leave 64 bits once summed
        "999999999999999999.99",
        "1,000",
    ],
)
def test_parse_total_rejects(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_total(text)


@given(st.lists(st.integers(min_value=1, max_value=MAX_HUNDREDTHS), max_size=50))
def test_sum_of_amounts_is_a_valid_total(amounts: list[int]) -> None:
    total = sum(amounts)
    assert parse_total(format_amount(total)) == total


# --- currencies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["KES", "USD", "EUR", "JPY", "KWD", "INR", "XOF"])
def test_payable_currencies(code: str) -> None:
    assert is_payable_currency(code)


@pytest.mark.parametrize(
    "code", ["kes", "Kes", "KE", "KESS", "", "XXX", "XTS", "XAU", "XAG", "USN", "CLF", " KES", "KES\n"]
)
def test_non_payable_currencies(code: str) -> None:
    assert not is_payable_currency(code)


def test_minor_unit_exponents() -> None:
    assert MINOR_UNITS["KES"] == 2
    assert MINOR_UNITS["USD"] == 2
    assert MINOR_UNITS["JPY"] == 0
    assert MINOR_UNITS["UGX"] == 0
    assert MINOR_UNITS["KWD"] == 3
    assert MINOR_UNITS["BHD"] == 3
    assert all(re.fullmatch(r"[A-Z]{3}", code) for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3}


@pytest.mark.parametrize(
    ("code", "hundredths", "fits"),
    [
        ("JPY", 1000, True),
        ("JPY", 1050, False),
        ("JPY", 1, False),
        ("UGX", 100, True),
        ("KES", 1050, True),
        ("KES", 1, True),
        ("KWD", 125, True),
    ],
)
def test_fits_minor_units(code: str, hundredths: int, fits: bool) -> None:
    assert fits_minor_units(code, hundredths) is fits
