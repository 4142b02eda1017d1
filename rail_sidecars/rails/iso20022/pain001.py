"""The pain.001.001.09 writer: one CstmrCdtTrfInitn per chunk, one payment information block per currency
(a chunk normally has one), one credit transfer per payment.

Amounts are integer hundredths end to end; the control sums are integer sums, formatted once.

Names and remittance texts go out in the character set banks enforce (`charset = "latin"`, the default):
the SWIFT/EPC Latin set `a-z A-Z 0-9 / - ? : ( ) . , ' +` and space. Letters with diacritics lose them
(é -> e), ligatures and special letters are spelled out (ß -> ss, Æ -> AE, Ø -> O), Cyrillic and Greek
are transliterated, any other character becomes "?" (and "&" becomes "+"). GPO keeps the originals; only
the file carries the transliteration. `charset = "unicode"` sends the text as it is (for banks that take
UTF-8).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from gpo_kernel import money
from gpo_kernel.currencies import MINOR_UNITS

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
MESSAGE_NAME = "pain.001.001.09"

MAX_END_TO_END_ID = 35
MAX_ATTEMPTS = 99  # attempt n > 0 adds "R" and two digits to the 32-character base

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Za-z0-9]{1,30}")
_BIC = re.compile(r"[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
_EXTERNAL_CODE = re.compile(r"[A-Z0-9]{1,4}")
# XML 1.0 forbids most control characters and U+FFFE/U+FFFF; the rest only hurt a bank's back end.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff]")

# Schemes of payee financial addresses that name a bank account.
DEFAULT_SCHEMES: tuple[str, ...] = ("iban", "account")


class InvalidPayee(ValueError):
    """The payee's financial address cannot be written as a creditor account."""


@dataclass(frozen=True, slots=True)
class Debtor:
    name: str
    iban: str
    bic: str
    initiating_party: str = ""  # GrpHdr/InitgPty/Nm; the debtor's name when empty
    initiating_party_id: str = ""  # InitgPty/Id/OrgId/Othr/Id: the customer id the bank gave the payer

    def check(self) -> None:
        if not _text(self.name, 140):
            raise ValueError("debtor_name is required")
        if not _IBAN.fullmatch(self.iban) or not iban_checksum_ok(self.iban):
            raise ValueError("debtor_iban is not a valid IBAN")
        if not _BIC.fullmatch(self.bic):
            raise ValueError("debtor_bic is not a BIC (8 or 11 upper-case letters and digits)")


@dataclass(frozen=True, slots=True)
class CreditorAccount:
    iban: str = ""  # exactly one of iban and other
    other: str = ""
    agent_bic: str = ""  # the payee's bank: a BIC, or another identifier in agent_id
    agent_id: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    end_to_end_id: str
    hundredths: int
    currency: str
    creditor_name: str
    account: CreditorAccount
    remittance: str = ""
    purpose: str = ""


@dataclass(frozen=True, slots=True)
class PaymentType:
    service_level: str = ""  # SvcLvl/Cd, e.g. SEPA
    category_purpose: str = ""  # CtgyPurp/Cd, e.g. SSBE (social security benefit), GOVT


def iban_checksum_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(c, 36)) for c in rearranged.upper())
    return int(digits) % 97 == 1


def creditor_account(payee_fa: str, schemes: Sequence[str] = DEFAULT_SCHEMES) -> CreditorAccount:
    """The creditor account of a "scheme:identifier@provider" address. Raises InvalidPayee."""
    scheme, _, rest = payee_fa.partition(":")
    ident, _, provider = rest.rpartition("@")
    if scheme not in schemes:
        raise InvalidPayee(
            f"scheme {scheme!r} is not a bank account scheme of this rail ({', '.join(schemes)})"
        )
    if not ident:
        raise InvalidPayee("the financial address has no account identifier")
    agent_bic = provider if _BIC.fullmatch(provider) else ""
    agent_id = "" if agent_bic else provider[:35]
    iban = ident.upper()
    is_iban = _IBAN.fullmatch(iban) is not None and iban_checksum_ok(iban)
    if scheme == "iban" and not is_iban:
        raise InvalidPayee("the IBAN fails its format or check digits")
    if is_iban:  # an "account:" identifier that is a valid IBAN is written as one
        return CreditorAccount(iban=iban, agent_bic=agent_bic, agent_id=agent_id)
    if len(ident) > 34:
        raise InvalidPayee("the account identifier is longer than 34 characters")
    return CreditorAccount(other=ident, agent_bic=agent_bic, agent_id=agent_id)


def end_to_end_id(idempotency_key: str, attempt: int = 0) -> str:
    """The EndToEndId (at most 35 characters) for a key: a UUID key without its hyphens (32 hex digits),
    any other key's SHA-256 prefix; a retry after a definite failure adds "R" and the attempt number.
    The sidecar's key map, not this function, maps an id back to its key."""
    if not 0 <= attempt <= MAX_ATTEMPTS:
        raise ValueError(f"attempt {attempt} is outside 0..{MAX_ATTEMPTS}")
    if _UUID.fullmatch(idempotency_key):
        base = idempotency_key.replace("-", "").lower()
    else:
        base = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return base if attempt == 0 else f"{base}R{attempt:02d}"


def message_id(end_to_end_ids: Iterable[str]) -> str:
    """MsgId from the transfers the file carries: the same set always gets the same id (35 characters)."""
    digest = hashlib.sha256("\n".join(sorted(end_to_end_ids)).encode()).hexdigest()
    return "GPO" + digest[:32]


def format_amount(hundredths: int, currency: str) -> str:
    """The amount as the bank expects it: no decimals for a currency without minor units."""
    if hundredths < 0:
        raise ValueError("negative amount")
    whole, cents = divmod(hundredths, 100)
    if MINOR_UNITS.get(currency, 2) == 0:
        if cents:
            raise ValueError(f"{currency} has no minor units")
        return str(whole)
    return money.format_amount(hundredths)


def payment_information_id(msg_id: str, currency: str) -> str:
    """MsgId is 35 characters: the block id keeps 31 of them and appends the currency."""
    return f"{msg_id[:31]}{currency}"


def format_total(hundredths: int) -> str:
    return money.format_amount(hundredths)


# The SWIFT "x" character set, which the EPC SEPA rulebooks also prescribe (Latin basic set).
LATIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-?:().,'+ ")
_SPELLED = {
    "ß": "ss",
    "ẞ": "SS",
    "Æ": "AE",
    "æ": "ae",
    "Œ": "OE",
    "œ": "oe",
    "Ø": "O",
    "ø": "o",
    "Þ": "TH",
    "þ": "th",
    "Ð": "D",
    "ð": "d",
    "Đ": "D",
    "đ": "d",
    "Ł": "L",
    "ł": "l",
    "Ħ": "H",
    "ħ": "h",
    "\u0131": "i",
    "Ŋ": "N",
    "ŋ": "n",
    "ĸ": "k",
    "&": "+",
    "_": "-",
    ";": ",",
    '"': "'",
    "`": "'",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": "'",
    "\u201d": "'",
    "\u2013": "-",
    "\u2014": "-",
    "!": ".",
    "[": "(",
    "]": ")",
    "{": "(",
    "}": ")",
    "<": "(",
    ">": ")",
    "*": ".",
    "#": " ",
    "%": " ",
    "=": "-",
    "@": "(at)",
    "\\": "/",
    "|": "/",
    "~": "-",
    "^": " ",
    "$": " ",
    "€": "EUR",
    "£": "GBP",
}
_CYRILLIC = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяєіїґў",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya ye i yi g u".split(),
        strict=True,
    )
)
_GREEK = dict(
    zip(
        "αβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώϊϋΐΰ",
        "a v g d e z i th i k l m n x o p r s s t y f ch ps o a e i i o y o i y i y".split(),
        strict=True,
    )
)


def latin(text: str) -> str:
    """The text in the SWIFT/EPC Latin character set (see the module's doc)."""
    out: list[str] = []
    for char in text:
        if char in LATIN:
            out.append(char)
            continue
        if char in _SPELLED:
            out.append(_SPELLED[char])
            continue
        lower = char.lower()
        spelled = _CYRILLIC.get(lower, "").replace("-", "") or _GREEK.get(lower, "")
        if spelled:
            out.append(spelled.capitalize() if char != lower else spelled)
            continue
        if char.isspace():
            out.append(" ")
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        if base and all(c in LATIN for c in base):
            out.append(base)
        elif char in "\u044a\u044c\u042a\u042c":  # hard and soft signs: dropped
            continue
        else:
            out.append("?")
    return re.sub(" {2,}", " ", "".join(out))


def build(
    msg_id: str,
    created: datetime,
    execution_date: date,
    debtor: Debtor,
    transfers: Sequence[Transfer],
    payment_type: PaymentType | None = None,
    *,
    batch_booking: bool = False,
    charset: str = "latin",
) -> bytes:
    """The pain.001.001.09 document, UTF-8 with an XML declaration. `batch_booking` is written in every
    payment information block (BtchBookg): true asks the bank for one booking per block, false for one
    per transfer; `charset` is "latin" (transliterated, see above) or "unicode"."""
    if not transfers:
        raise ValueError("a pain.001 needs at least one transfer")
    if charset not in ("latin", "unicode"):
        raise ValueError(f"charset must be latin or unicode, not {charset!r}")
    if charset == "latin":
        transfers = [
            dataclasses.replace(t, creditor_name=latin(t.creditor_name), remittance=latin(t.remittance))
            for t in transfers
        ]
        debtor = dataclasses.replace(
            debtor, name=latin(debtor.name), initiating_party=latin(debtor.initiating_party)
        )
    payment_type = payment_type or PaymentType()
    total = sum(t.hundredths for t in transfers)
    # Unprefixed names under a default namespace declared by hand: ElementTree's default_namespace
    # option refuses the unqualified Ccy attribute.
    root = ET.Element("Document", {"xmlns": NAMESPACE})
    initiation = _sub(root, "CstmrCdtTrfInitn")
    header = _sub(initiation, "GrpHdr")
    _sub(header, "MsgId", msg_id)
    _sub(header, "CreDtTm", created.isoformat(timespec="seconds"))
    _sub(header, "NbOfTxs", str(len(transfers)))
    _sub(header, "CtrlSum", format_total(total))
    party = _sub(header, "InitgPty")
    _sub(party, "Nm", _text(debtor.initiating_party or debtor.name, 140))
    if debtor.initiating_party_id:
        other = _sub(_sub(_sub(party, "Id"), "OrgId"), "Othr")
        _sub(other, "Id", _text(debtor.initiating_party_id, 35))
    by_currency: dict[str, list[Transfer]] = {}
    for t in transfers:
        by_currency.setdefault(t.currency, []).append(t)
    for currency in sorted(by_currency):
        _payment_information(
            initiation,
            msg_id,
            currency,
            by_currency[currency],
            execution_date,
            debtor,
            payment_type,
            batch_booking,
        )
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _payment_information(
    parent: ET.Element,
    msg_id: str,
    currency: str,
    transfers: list[Transfer],
    execution_date: date,
    debtor: Debtor,
    payment_type: PaymentType,
    batch_booking: bool,
) -> None:
    info = _sub(parent, "PmtInf")
    _sub(info, "PmtInfId", payment_information_id(msg_id, currency))
    _sub(info, "PmtMtd", "TRF")
    _sub(info, "BtchBookg", "true" if batch_booking else "false")
    _sub(info, "NbOfTxs", str(len(transfers)))
    _sub(info, "CtrlSum", format_total(sum(t.hundredths for t in transfers)))
    if payment_type.service_level or payment_type.category_purpose:
        kind = _sub(info, "PmtTpInf")
        if payment_type.service_level:
            _sub(_sub(kind, "SvcLvl"), "Cd", payment_type.service_level)
        if payment_type.category_purpose:
            _sub(_sub(kind, "CtgyPurp"), "Cd", payment_type.category_purpose)
    _sub(_sub(info, "ReqdExctnDt"), "Dt", execution_date.isoformat())
    _sub(_sub(info, "Dbtr"), "Nm", _text(debtor.name, 140))
    _sub(_sub(_sub(info, "DbtrAcct"), "Id"), "IBAN", debtor.iban)
    _sub(_sub(_sub(info, "DbtrAgt"), "FinInstnId"), "BICFI", debtor.bic)
    _sub(info, "ChrgBr", "SLEV")
    for t in transfers:
        _credit_transfer(info, t)


def _credit_transfer(parent: ET.Element, t: Transfer) -> None:
    tx = _sub(parent, "CdtTrfTxInf")
    _sub(_sub(tx, "PmtId"), "EndToEndId", t.end_to_end_id)
    amount = _sub(_sub(tx, "Amt"), "InstdAmt", format_amount(t.hundredths, t.currency))
    amount.set("Ccy", t.currency)
    if t.account.agent_bic or t.account.agent_id:
        institution = _sub(_sub(tx, "CdtrAgt"), "FinInstnId")
        if t.account.agent_bic:
            _sub(institution, "BICFI", t.account.agent_bic)
        else:
            _sub(_sub(institution, "Othr"), "Id", t.account.agent_id)
    creditor = _sub(tx, "Cdtr")
    name = _text(t.creditor_name, 140)
    if name:
        _sub(creditor, "Nm", name)
    account_id = _sub(_sub(tx, "CdtrAcct"), "Id")
    if t.account.iban:
        _sub(account_id, "IBAN", t.account.iban)
    else:
        _sub(_sub(account_id, "Othr"), "Id", t.account.other)
    purpose = _text(t.purpose, 35)
    if purpose:
        choice = _sub(tx, "Purp")
        if _EXTERNAL_CODE.fullmatch(purpose):
            _sub(choice, "Cd", purpose)
        else:
            _sub(choice, "Prtry", purpose)
    remittance = _text(t.remittance, 140)
    if remittance:
        _sub(_sub(tx, "RmtInf"), "Ustrd", remittance)


def _sub(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, name)
    if text is not None:
        element.text = text
    return element


def _text(value: str, limit: int) -> str:
    return _CONTROL.sub(" ", value).strip()[:limit].strip()
