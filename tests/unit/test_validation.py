"""Intake validation of one payment: each rejection path gives its precise G2P Connect reason code."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from gpo_kernel.masking import mask_account, mask_fa
from gpo_kernel.reasons import Reason
from gpo_server.domain.validation import (
    MAX_FA,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_TEXT,
    MAX_NAME,
    MAX_NOTE,
    MAX_PURPOSE,
    MAX_REFERENCE_ID,
    PaymentFields,
    Rejection,
    ValidPayment,
    is_financial_address,
    validate_metadata,
    validate_payment,
)

PAYER = "account:0011223344@bank-a.pymt-rail"


@dataclass(frozen=True)
class Payment:
    """A plain object satisfying PaymentFields."""

    reference_id: str = "ref-0001"
    payer_fa: str = ""
    payee_fa: str = "mobile:254712345678@mpesa"
    amount: str = "125.50"
    currency_code: str = "KES"
    payee_name: str = "Amina Wanjiru"
    note: str = "June cash transfer"
    purpose: str = "cash-transfer"


def check(payer_fa: str = PAYER, **changes: str) -> ValidPayment | Rejection:
    payment: PaymentFields = replace(Payment(), **changes)
    return validate_payment(payment, payer_fa)


def reason_of(result: ValidPayment | Rejection) -> str:
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    assert result.message  # every rejection explains itself
    return result.reason


def fa_of_length(length: int) -> str:
    """A well-formed address of exactly `length` characters (identifier 200, provider padded)."""
    head = "account:" + "1" * 200 + "@"
    provider = "b" + "a" * (length - len(head) - 1)
    fa = head + provider
    assert len(fa) == length
    return fa


# --- the happy path -----------------------------------------------------------------------------------


def test_valid_payment_returns_exact_hundredths() -> None:
    assert check() == ValidPayment(12550)


@pytest.mark.parametrize(
    ("amount", "currency", "hundredths"),
    [
        ("10.00", "JPY", 1000),
        ("10", "JPY", None),
        ("1.25", "KWD", 125),
        ("0.01", "USD", 1),
        ("7.5", "KES", 750),
    ],
)
def test_amounts_per_currency(amount: str, currency: str, hundredths: int | None) -> None:
    result = check(amount=amount, currency_code=currency)
    if hundredths is None:
        assert reason_of(result) == Reason.AMOUNT_INVALID
    else:
        assert result == ValidPayment(hundredths)


def test_optional_text_fields_may_be_empty() -> None:
    assert check(payee_name="", note="", purpose="") == ValidPayment(12550)


def test_limits_are_inclusive() -> None:
    result = check(
        reference_id="r" * MAX_REFERENCE_ID,
        payee_name="n" * MAX_NAME,
        note="x" * MAX_NOTE,
        purpose="p" * MAX_PURPOSE,
        payee_fa=fa_of_length(MAX_FA),
        payer_fa=fa_of_length(MAX_FA),
    )
    assert result == ValidPayment(12550)


def test_unicode_names_and_notes_are_allowed() -> None:
    assert check(payee_name="Ñandú Ōsaka محمد", note="पेंशन — juin") == ValidPayment(12550)


# --- reference_id -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "",  # used to crash with UnboundLocalError instead of being rejected
        "r" * (MAX_REFERENCE_ID + 1),
        "ref\x00",
        "ref\n1",
        "ref\u0085",
        "ref\x7f",
        " ref",
        "ref ",
        "\tref",
        "ref\u00a0",
        " ",
    ],
)
def test_bad_reference_id(ref: str) -> None:
    assert reason_of(check(reference_id=ref)) == Reason.REFERENCE_ID_INVALID


# --- amount -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        "0.00",
        "0.0",
        "0000000000000.00",
        "-1.00",
        "1",
        "1.",
        ".5",
        "1e5",
        "0.001",
        "\uff11\uff12.\uff10\uff10",
        "NaN",
        "",
        " 1.00",
    ],
)
def test_bad_amount(amount: str) -> None:
    assert reason_of(check(amount=amount)) == Reason.AMOUNT_INVALID


def test_zero_amount_message() -> None:
    result = check(amount="0.00")
    assert isinstance(result, Rejection)
    assert "greater than zero" in result.message


def test_smallest_and_largest_amounts() -> None:
    assert check(amount="0.01") == ValidPayment(1)
    assert check(amount="9999999999999.99") == ValidPayment(999999999999999)
    assert reason_of(check(amount="10000000000000.00")) == Reason.AMOUNT_INVALID


# --- currency -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "currency", ["kes", "XXX", "KE", "", "KESS", "XTS", "XAU", "K3S", "\uff2b\uff25\uff33", "KES "]
)
def test_bad_currency(currency: str) -> None:
    assert reason_of(check(currency_code=currency)) == Reason.CURRENCY_CODE_INVALID


def test_zero_decimal_currency_with_cents_is_an_amount_problem() -> None:
    assert reason_of(check(currency_code="JPY", amount="10.50")) == Reason.AMOUNT_INVALID
    assert reason_of(check(currency_code="JPY", amount="10.01")) == Reason.AMOUNT_INVALID
    assert check(currency_code="JPY", amount="10.00") == ValidPayment(1000)
    assert check(currency_code="JPY", amount="10.0") == ValidPayment(1000)


# --- financial addresses ------------------------------------------------------------------------------

G2P_CONNECT_EXAMPLES = [
    "token:12345@national-id",
    "account:12345@abcd0000001.ifsc.pymt-rail",
    "mobile:12345@mobile-pymt",
]

BAD_FAS = [
    "",
    fa_of_length(MAX_FA + 1),
    fa_of_length(300),
    "mobile:" + "1" * 100_000 + "@mpesa",
    "mobile:123\x0045@mpesa",
    "mobile:12345@mpesa\n",
    "mobile:12345\n@mpesa",
    "\nmobile:12345@mpesa",
    "mobile:123\u008545@mpesa",
    "mobile:12345@mpesa\u0085",
    "mobile:123 45@mpesa",
    " mobile:12345@mpesa",
    "mobile:12345@mpesa ",
    "mobile: 12345@mpesa",
    "12345@mpesa",  # no scheme
    ":12345@mpesa",  # empty scheme
    "mobile:12345",  # no provider
    "mobile:12345@",  # empty provider
    "mobile:@mpesa",  # empty identifier
    "mobile@mpesa",
    "mobile:12345@@mpesa",
    "mobile:12345@mpesa@other",
    "1mobile:12345@mpesa",  # scheme must start with a letter
    "mobile:\u0661\u0662\u0663\u0664\u0665@mpesa",  # Arabic-Indic digits
    "mobile:\uff11\uff12\uff13\uff14\uff15@mpesa",  # full-width digits
    "mobile:12345@mpésa",
    "mobile:12345@-mpesa",
    "mobile:12345@.mpesa",
]


@pytest.mark.parametrize("fa", G2P_CONNECT_EXAMPLES)
def test_g2p_connect_examples_are_financial_addresses(fa: str) -> None:
    assert is_financial_address(fa)
    assert check(payee_fa=fa, payer_fa=fa) == ValidPayment(12550)


@pytest.mark.parametrize("fa", BAD_FAS)
def test_bad_financial_addresses(fa: str) -> None:
    assert not is_financial_address(fa)


@pytest.mark.parametrize("fa", BAD_FAS)
def test_bad_payee_fa(fa: str) -> None:
    assert reason_of(check(payee_fa=fa)) == Reason.PAYEE_FA_INVALID


@pytest.mark.parametrize("fa", BAD_FAS)
def test_bad_payer_fa(fa: str) -> None:
    assert reason_of(check(payer_fa=fa)) == Reason.PAYER_FA_INVALID


def test_fa_length_boundary() -> None:
    assert is_financial_address(fa_of_length(MAX_FA))
    assert not is_financial_address(fa_of_length(MAX_FA + 1))


def test_payer_fa_argument_is_what_is_checked() -> None:
    # The caller passes the payment's own payer_fa or the batch default; the field itself is not read.
    payment = Payment(payer_fa="not an address")
    assert validate_payment(payment, PAYER) == ValidPayment(12550)
    assert reason_of(validate_payment(Payment(payer_fa=PAYER), "")) == Reason.PAYER_FA_INVALID


# --- payee_name, note, purpose ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("payee_name", "n" * (MAX_NAME + 1), Reason.PAYEE_NAME_INVALID),
        ("payee_name", "Amina\x00", Reason.PAYEE_NAME_INVALID),
        ("payee_name", "Amina\nWanjiru", Reason.PAYEE_NAME_INVALID),
        ("payee_name", "Amina\u0085", Reason.PAYEE_NAME_INVALID),
        ("note", "x" * 100_000, Reason.NOTE_INVALID),
        ("note", "x" * (MAX_NOTE + 1), Reason.NOTE_INVALID),
        ("note", "line\x1b[31m", Reason.NOTE_INVALID),
        ("note", "bell\x07", Reason.NOTE_INVALID),
        ("purpose", "p" * (MAX_PURPOSE + 1), Reason.PURPOSE_INVALID),
        ("purpose", "cash\ttransfer", Reason.PURPOSE_INVALID),
        ("purpose", "cash\x9f", Reason.PURPOSE_INVALID),
    ],
)
def test_bad_text_fields(field: str, value: str, reason: Reason) -> None:
    assert reason_of(check(**{field: value})) == reason


def test_huge_note_message_names_the_field() -> None:
    result = check(note="x" * 100_000)
    assert isinstance(result, Rejection)
    assert result.reason == Reason.NOTE_INVALID
    assert result.reason == "rjct.note.invalid"
    assert "note" in result.message
    assert len(result.message) < 200  # the note itself is not echoed back


# --- never raises -------------------------------------------------------------------------------------

_ref = st.one_of(st.text(max_size=200), st.just("ref-1"))
_amount = st.one_of(st.text(max_size=20), st.from_regex(r"[0-9]{1,13}\.[0-9]{1,2}", fullmatch=True))
_currency = st.one_of(st.text(max_size=4), st.sampled_from(["KES", "JPY", "KWD", "kes", "XXX"]))
_fa = st.one_of(st.text(max_size=300), st.sampled_from(G2P_CONNECT_EXAMPLES))


@given(
    reference_id=_ref,
    amount=_amount,
    currency_code=_currency,
    payee_fa=_fa,
    payer_fa=_fa,
    payee_name=st.text(max_size=300),
    note=st.text(max_size=1100),
    purpose=st.text(max_size=150),
)
@example(
    reference_id="",
    amount="1.00",
    currency_code="KES",
    payee_fa=G2P_CONNECT_EXAMPLES[0],
    payer_fa=G2P_CONNECT_EXAMPLES[0],
    payee_name="",
    note="",
    purpose="",
)
def test_validate_payment_never_raises(
    reference_id: str,
    amount: str,
    currency_code: str,
    payee_fa: str,
    payer_fa: str,
    payee_name: str,
    note: str,
    purpose: str,
) -> None:
    payment = Payment(
        reference_id=reference_id,
        amount=amount,
        currency_code=currency_code,
        payee_fa=payee_fa,
        payee_name=payee_name,
        note=note,
        purpose=purpose,
    )
    result = validate_payment(payment, payer_fa)
    if isinstance(result, ValidPayment):
        assert result.amount_hundredths > 0
        assert re.fullmatch(r"[0-9]{1,13}\.[0-9]{1,2}", amount, re.ASCII)
        assert is_financial_address(payee_fa)
        assert is_financial_address(payer_fa)
        assert reference_id and reference_id.strip() == reference_id
    else:
        assert isinstance(result, Rejection)
        assert isinstance(result.reason, Reason)
        assert result.message


# --- metadata -----------------------------------------------------------------------------------------


def test_metadata_ok() -> None:
    assert validate_metadata({}) is None
    assert validate_metadata({"programme": "cash-transfer", "cycle": "2025-06"}) is None
    assert validate_metadata({f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES)}) is None
    assert validate_metadata({"k": "v" * (MAX_METADATA_TEXT - 1)}) is None


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES + 1)},
        {"k": "v" * MAX_METADATA_TEXT},
        {"k" * 600: "v" * 600},
        {"bad\x00key": "v"},
        {"bad\nkey": "v"},
    ],
)
def test_bad_metadata(metadata: dict[str, str]) -> None:
    result = validate_metadata(metadata)
    assert isinstance(result, Rejection)
    assert result.reason == Reason.METADATA_INVALID


# --- mask_fa ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fa", "masked"),
    [
        ("mobile:254712345678@mpesa", "mobile:***5678@mpesa"),
        ("account:12345@abcd0000001.ifsc.pymt-rail", "account:***@abcd0000001.ifsc.pymt-rail"),
        ("token:1234567@national-id", "token:***4567@national-id"),
        ("token:123456@national-id", "token:***@national-id"),  # too short to show any of it
        ("mobile:1@mpesa", "mobile:***@mpesa"),
        ("mobile:254712345678", "***"),  # no provider: nothing is kept
        ("254712345678", "***"),
        ("", "***"),
        ("mobile:@mpesa", "***"),
    ],
)
def test_mask_fa_examples(fa: str, masked: str) -> None:
    assert mask_fa(fa) == masked


@pytest.mark.parametrize(
    ("account", "masked"),
    [("NL91ABNA0417164300", "***4300"), ("1234567", "***4567"), ("123456", "***"), ("", "***")],
)
def test_mask_account_examples(account: str, masked: str) -> None:
    assert mask_account(account) == masked


_scheme = st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True)
_ident = st.from_regex(r"[A-Za-z0-9._+-]{7,200}", fullmatch=True)
_provider = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}", fullmatch=True)


@given(_scheme, _ident, _provider)
@example("mobile", "254712345678", "mpesa")
@example("a", "1234567", "p")
def test_mask_fa_never_shows_the_identifier(scheme: str, ident: str, provider: str) -> None:
    # An identifier that also appears in the scheme or provider would be "shown" by them, not by masking.
    assume(ident not in scheme and ident not in provider)
    fa = f"{scheme}:{ident}@{provider}"
    masked = mask_fa(fa)
    assert ident not in masked
    assert masked.startswith(f"{scheme}:")
    assert masked.endswith(f"@{provider}")
    assert masked == f"{scheme}:***{ident[-4:]}@{provider}"


@given(_scheme, st.from_regex(r"[A-Za-z0-9._+-]{1,6}", fullmatch=True), _provider)
def test_mask_fa_hides_short_identifiers_entirely(scheme: str, ident: str, provider: str) -> None:
    assert mask_fa(f"{scheme}:{ident}@{provider}") == f"{scheme}:***@{provider}"


# --- reason codes -------------------------------------------------------------------------------------


def test_reason_codes_have_the_g2p_connect_shape() -> None:
    for reason in Reason:
        assert re.fullmatch(r"rjct\.[a-z_]+\.[a-z_]+", reason.value), reason


def test_spec_reason_codes() -> None:
    assert Reason.REFERENCE_ID_INVALID.value == "rjct.reference_id.invalid"
    assert Reason.AMOUNT_INVALID.value == "rjct.amount.invalid"
    assert Reason.CURRENCY_CODE_INVALID.value == "rjct.currency_code.invalid"
    assert Reason.PAYER_FA_INVALID.value == "rjct.payer_fa.invalid"
    assert Reason.PAYEE_FA_INVALID.value == "rjct.payee_fa.invalid"
    assert Reason.PAYEE_NAME_INVALID.value == "rjct.payee_name.invalid"
    assert Reason.NOTE_INVALID.value == "rjct.note.invalid"
    assert Reason.PURPOSE_INVALID.value == "rjct.purpose.invalid"
