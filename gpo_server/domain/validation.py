"""Validation of one payment at intake. A bad payment is rejected on its own; the batch goes on."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

from gpo_kernel.currencies import fits_minor_units, is_payable_currency
from gpo_kernel.reasons import Reason
from gpo_server.domain.money import InvalidAmount, parse_amount

MAX_REFERENCE_ID = 128
MAX_FA = 255
MAX_NAME = 255
MAX_NOTE = 1024
MAX_PURPOSE = 128
MAX_METADATA_ENTRIES = 32
MAX_METADATA_TEXT = 1024  # one entry, key and value
MAX_METADATA_TOTAL = 4096  # every entry of one payment: each row (and each reply) stays small
MAX_PROGRAM = 128
MAX_CALLBACK_URI = 2048

# "scheme:identifier@provider", as G2P Connect's examples write them (token:…@national-id,
# account:…@ifsc.pymt-rail, mobile:…@mobile-pymt). The spec's own regex rejects its examples' ":"
# (see ../shared/specs/README.md); this follows the evident intent.
_FA = re.compile(r"[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9._+-]{1,200}@[A-Za-z0-9][A-Za-z0-9._-]{0,120}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Joiners that Persian, Arabic and Indic names need (ZWNJ, ZWJ); every other format character (Unicode
# category Cf: bidirectional overrides such as U+202E, zero-width spaces, U+FEFF) lets two different
# strings look the same, so names and texts refuse them and identifiers refuse every one.
_NAME_JOINERS = frozenset("\u200c\u200d")


class PaymentFields(Protocol):
    """What validation reads of a payment; a gpo.v1.PaymentInput message satisfies it, and so does a frozen
    dataclass (read-only members)."""

    @property
    def reference_id(self) -> str: ...

    @property
    def payer_fa(self) -> str: ...

    @property
    def payee_fa(self) -> str: ...

    @property
    def amount(self) -> str: ...

    @property
    def currency_code(self) -> str: ...

    @property
    def payee_name(self) -> str: ...

    @property
    def note(self) -> str: ...

    @property
    def purpose(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str  # a Reason, or a code decided outside GPO's own rules (G2P Connect's)
    message: str


@dataclass(frozen=True, slots=True)
class ValidPayment:
    amount_hundredths: int


def is_financial_address(text: str) -> bool:
    return len(text) <= MAX_FA and _FA.fullmatch(text) is not None


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def has_format_characters(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Unicode format characters (Cf), such as U+202E RIGHT-TO-LEFT OVERRIDE or U+200B ZERO WIDTH SPACE."""
    if text.isascii():  # the common case costs one scan
        return False
    return any(unicodedata.category(c) == "Cf" and c not in allowed for c in text)


def nfc(text: str) -> str:
    """Unicode NFC: composed and decomposed spellings of one text become the same string, so that two
    look-alike references cannot both pass the duplicate check."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def program_problem(program: str) -> str | None:
    """Why a program name is not acceptable, or None."""
    if not program:
        return "required"
    if len(program) > MAX_PROGRAM:
        return f"longer than {MAX_PROGRAM} characters"
    if has_control_characters(program) or has_format_characters(program):
        return "contains control characters"
    return None


def callback_uri_problem(uri: str, *, allow_http_loopback: bool = False) -> str | None:
    """Why a callback URI is not acceptable, or None: https only (a javascript:, file: or plain http URI
    would be stored and called), plus http to a loopback address where that is allowed (tests, a local
    relay)."""
    if len(uri) > MAX_CALLBACK_URI:
        return f"longer than {MAX_CALLBACK_URI} characters"
    if has_control_characters(uri) or has_format_characters(uri):
        return "contains control characters"
    try:
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return "is not a URI"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and allow_http_loopback and host and _is_loopback(host):
        return None
    return "must be an https URI" + (" (or http to a loopback address)" if allow_http_loopback else "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text_problem(value: str, limit: int, allowed: frozenset[str] = _NAME_JOINERS) -> str | None:
    if len(value) > limit:
        return f"longer than {limit} characters"
    if _CONTROL.search(value):
        return "contains control characters"
    if has_format_characters(value, allowed):
        return "contains invisible format characters (e.g. a bidirectional override or zero-width space)"
    return None


def validate_payment(p: PaymentFields, payer_fa: str) -> ValidPayment | Rejection:
    """Checks one payment; payer_fa is the payment's own or the batch default. Never raises."""
    ref = p.reference_id
    if not ref:
        return Rejection(Reason.REFERENCE_ID_INVALID, "reference_id is empty")
    if (problem := _text_problem(ref, MAX_REFERENCE_ID, frozenset())) is not None:
        return Rejection(Reason.REFERENCE_ID_INVALID, f"reference_id is {problem}")
    if ref.strip() != ref:
        return Rejection(Reason.REFERENCE_ID_INVALID, "reference_id has leading or trailing whitespace")
    try:
        hundredths = parse_amount(p.amount)
    except InvalidAmount as exc:
        return Rejection(Reason.AMOUNT_INVALID, str(exc))
    if hundredths == 0:
        return Rejection(Reason.AMOUNT_INVALID, "amount must be greater than zero")
    if not is_payable_currency(p.currency_code):
        return Rejection(
            Reason.CURRENCY_CODE_INVALID,
            f"currency_code {p.currency_code[:8]!r} is not a payable ISO 4217 code",
        )
    if not fits_minor_units(p.currency_code, hundredths):
        return Rejection(
            Reason.AMOUNT_INVALID, f"{p.currency_code} has no minor units; amount {p.amount} has"
        )
    if not is_financial_address(p.payee_fa):
        return Rejection(Reason.PAYEE_FA_INVALID, "payee_fa is not a financial address scheme:id@provider")
    if not is_financial_address(payer_fa):
        return Rejection(
            Reason.PAYER_FA_INVALID, "payer_fa (or the header's payer_fa) is not a financial address"
        )
    name, note, purpose = p.payee_name, p.note, p.purpose
    # The common case, everything clean, costs one search; the loop below only names the culprit.
    if (
        len(name) > MAX_NAME
        or len(note) > MAX_NOTE
        or len(purpose) > MAX_PURPOSE
        or _CONTROL.search(f"{name}{note}{purpose}")
        or has_format_characters(f"{name}{note}{purpose}", _NAME_JOINERS)
    ):
        for value, limit, reason, field in (
            (name, MAX_NAME, Reason.PAYEE_NAME_INVALID, "payee_name"),
            (note, MAX_NOTE, Reason.NOTE_INVALID, "note"),
            (purpose, MAX_PURPOSE, Reason.PURPOSE_INVALID, "purpose"),
        ):
            if value and (problem := _text_problem(value, limit)) is not None:
                return Rejection(reason, f"{field} is {problem}")
    return ValidPayment(hundredths)


def validate_metadata(metadata: dict[str, str]) -> Rejection | None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        return Rejection(Reason.METADATA_INVALID, f"more than {MAX_METADATA_ENTRIES} metadata entries")
    if sum(len(key) + len(value) for key, value in metadata.items()) > MAX_METADATA_TOTAL:
        return Rejection(
            Reason.METADATA_INVALID, f"metadata longer than {MAX_METADATA_TOTAL} characters in all"
        )
    for key, value in metadata.items():
        if len(key) + len(value) > MAX_METADATA_TEXT or _CONTROL.search(key):
            return Rejection(
                Reason.METADATA_INVALID, "a metadata entry is too long or has control characters"
            )
    return None
