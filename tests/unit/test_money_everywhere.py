"""Issue 11: every module that parses money refuses the same hostile amounts and reads a good one exactly.

Four regexes once parsed money; two used \\d and "$", which let full-width digits and "1.5\\n" through. Each
parser is reached here through the module that uses it, so a module that grows its own parser again fails
this test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gpo_conformance.ledger import Ledger
from gpo_kernel import money as kernel
from gpo_kernel.rails_config import RailConfig
from gpo_server.domain import money as server_money
from gpo_server.domain.validation import Rejection, ValidPayment, validate_payment
from rail_sidecars.rails.base import Outcome, RailPayment
from rail_sidecars.rails.gsma import transformers as gsma
from rail_sidecars.rails.iso20022.rail import from_config as iso20022_rail
from rail_sidecars.rails.mojaloop import transformers as mojaloop
from rail_sidecars.rails.simulator.store import parse_hundredths
from rail_sidecars.sdk.notes import MemoryRailNotes


def _hostile(places: int, whole_digits: int) -> list[str]:
    return [
        "\uff11\uff12.\uff15",  # full-width digits
        "\uff11\uff12.\uff15\uff10",
        "\u0661\u0662.\u0665\u0660",  # Arabic-Indic digits
        "\u0967\u0968.\u096b\u0966",  # Devanagari digits
        "12.50\n",  # trailing newline: what "$" lets by
        "12.5\n",
        "\n12.50",
        " 12.50",
        "12.50 ",
        "12.50\x00",
        "+12.50",
        "-12.50",
        "1e3",
        "1E3",
        "1.5e1",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        "1." + "0" * places + "1",  # one decimal more than the module takes
        "1" * (whole_digits + 1) + ".00",  # one digit more than the module takes
        "9" * 100_000,  # huge
        "",
        ".",
        "1.",
        ".5",
        "1,50",
        "1_000.00",
        "0x10",
        "1.0.0",
    ]


@dataclass(frozen=True)
class Parser:
    """One module's way in: parse returns the amount in the module's own units, or raises `refusal`."""

    name: str
    parse: Callable[[str], object]
    refusal: type[Exception]
    places: int
    whole_digits: int
    good: tuple[str, object]  # an amount in the module's form and what it must give


def _simulator(text: str) -> int:
    value = parse_hundredths(text)
    if value is None:
        raise ValueError(text)
    return value


def _validation(text: str) -> int:
    fields = {
        "reference_id": "r-1",
        "payer_fa": "account:treasury@central-bank",
        "payee_fa": "mobile:254700000001@mpesa",
        "amount": text,
        "currency_code": "KES",
        "payee_name": "",
        "note": "",
        "purpose": "",
    }
    result = validate_payment(type("Fields", (), fields)(), fields["payer_fa"])
    if isinstance(result, Rejection):
        assert result.reason == "rjct.amount.invalid", result
        raise ValueError(result.message)
    assert isinstance(result, ValidPayment)
    return result.amount_hundredths


PARSERS = [
    Parser("gpo_kernel.money.parse_amount", kernel.parse_amount, kernel.InvalidAmount, 2, 13, ("12.5", 1250)),
    Parser(
        "gpo_server.domain.money.parse_amount",
        server_money.parse_amount,
        kernel.InvalidAmount,
        2,
        13,
        ("12.50", 1250),
    ),
    Parser(
        "gpo_server.domain.money.parse_total",
        server_money.parse_total,
        kernel.InvalidAmount,
        2,
        15,
        ("12", 1200),
    ),
    Parser("gpo_server.domain.validation", _validation, ValueError, 2, 13, ("12.5", 1250)),
    Parser("mojaloop.to_units", mojaloop.to_units, ValueError, 4, 18, ("12.5", 125_000)),
    Parser("gsma.to_mmapi_amount", gsma.to_mmapi_amount, gsma.TransformError, 2, 13, ("12.50", "12.5")),
    Parser("gsma.from_mmapi_amount", gsma.from_mmapi_amount, ValueError, 2, 18, ("12.5", "12.50")),
    Parser("simulator_ledger.parse_hundredths", _simulator, ValueError, 2, 13, ("12.5", 1250)),
    # The camt.054 batch totals of the ISO 20022 rail (18 digits, as ISO 20022 amounts have).
    Parser(
        "iso20022 camt.054 totals",
        lambda text: kernel.parse_units(text, places=2, whole_digits=18),
        kernel.InvalidAmount,
        2,
        18,
        ("12.5", 1250),
    ),
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_every_money_parser_reads_a_good_amount_exactly(parser: Parser) -> None:
    text, expected = parser.good
    value = parser.parse(text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.name)
def test_every_money_parser_refuses_hostile_amounts(parser: Parser) -> None:
    accepted = []
    for text in _hostile(parser.places, parser.whole_digits):
        try:
            value = parser.parse(text)
        except parser.refusal:
            continue
        accepted.append((text[:20], value))
    assert accepted == []


def _payment(amount: str) -> RailPayment:
    return RailPayment(
        idempotency_key="0f85f75c-5615-48a7-91dd-4e428a908dae",
        reference_id="r-1",
        payer_fa="account:treasury@central-bank",
        payee_fa="account:12345678@bank-a",
        amount=amount,
        currency_code="EUR",
    )


async def test_the_iso20022_rail_refuses_hostile_amounts_without_sending(tmp_path: Path) -> None:
    # Its success path (a real file to the test bank) is in tests/rails/test_iso20022.py.
    options = {
        "pain001_dir": str(tmp_path / "in"),
        "reports_dir": str(tmp_path / "out"),
        "debtor_name": "Ministry",
        "debtor_iban": "DE89370400440532013000",
        "debtor_bic": "COBADEFFXXX",
        "validate": False,
    }
    rail = iso20022_rail(RailConfig("bank", "iso20022", options=options), notes=MemoryRailNotes())
    for text in _hostile(2, 13):
        results = await rail.execute([_payment(text)])
        assert [(r.outcome, r.reason_code) for r in results] == [(Outcome.FAILED, "rjct.amount.invalid")], (
            text[:20]
        )
    assert not any((tmp_path / "in").glob("*")), "a file went to the bank"


async def test_the_conformance_ledger_refuses_hostile_amounts() -> None:
    """The kit's rail checks the sidecar under test: it keeps its own, stricter, canonical two-decimal form."""
    ledger = await Ledger().start()
    try:
        async with httpx.AsyncClient(base_url=ledger.url) as client:

            async def post(amount: str) -> int:
                body = {"idempotency_key": amount[:40] or "k", "amount": amount, "currency_code": "KES"}
                return (await client.post("/payments", json=body)).status_code

            assert await post("12.50") == 200
            statuses = {text[:20]: await post(text) for text in _hostile(2, 18)}
        assert {text: status for text, status in statuses.items() if status != 400} == {}
        assert len(ledger.executions) == 1
    finally:
        await ledger.stop()
