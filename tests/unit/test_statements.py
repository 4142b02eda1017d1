"""Bank statement parsers (camt.053.001.08 against the official XSD, MT940 through the mt-940 package) and
the matching rules: clear errors for malformed files, exact amounts, ISO 20022 batch bookings."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from gpo_server.domain.reconciliation import (
    CONFIRMING,
    PROBLEMS,
    Matcher,
    Outcome,
    PaymentKeys,
    iso20022_end_to_end_id,
)
from gpo_server.domain.states import PaymentStatus
from gpo_server.statements import camt053, mt940
from gpo_server.statements.records import EntryRecord, StatementInvalid
from rail_sidecars.rails.iso20022 import pain001
from tests.integration.test_reconciliation import IBAN, XSD
from tests.integration.test_reconciliation import camt053 as bank_camt053
from tests.integration.test_reconciliation import mt940 as bank_mt940

S = PaymentStatus


# ---- camt.053 -------------------------------------------------------------------------------------


def test_a_camt053_statement_gives_exact_entries() -> None:
    data = bank_camt053(
        "S-1",
        [
            {"amount": "125.50", "ref": "BK-1", "e2e": ["a" * 32]},
            {"amount": "30.00", "ref": "BK-2", "batch": "PMT-1", "e2e": ["b" * 32, "c" * 32]},
            {"amount": "125.50", "ref": "BK-3", "credit": True, "e2e": ["a" * 32], "return_code": "AC04"},
            {"amount": "7", "ref": "BK-4", "credit": True},
        ],
    )
    [statement] = camt053.parse(data, XSD)
    assert (statement.format, statement.statement_id, statement.account) == ("camt.053", "S-1", IBAN)
    one, batch, back, funding = statement.entries
    assert (one.amount_hundredths, one.currency, one.credit, one.booked) == (12550, "EUR", False, True)
    assert one.end_to_end_ids == ("a" * 32,) and one.servicer_reference == "BK-1"
    assert one.booking_date == dt.date.today()
    assert (batch.batch_reference, batch.batch_count, batch.end_to_end_ids) == ("PMT-1", 2, ("b" * 32, "c" * 32))
    assert back.returned and back.credit and back.return_reason == "AC04 account closed"
    assert funding.amount_hundredths == 700 and funding.credit and not funding.returned


@pytest.mark.parametrize(
    ("mangle", "problem"),
    [
        (lambda d: d[:-20], "not well-formed"),
        (lambda d: d.replace(b"<CdtDbtInd>DBIT", b"<CdtDbtInd>DEBIT").replace(b"DBIT</", b"DEBIT</"), "schema"),
        (lambda d: d.replace(b"camt.053.001.08", b"camt.053.001.02"), "namespace"),
        (lambda d: d.replace(b">125.50<", b">125.505<"), "more than two decimals"),
        (lambda d: d.replace(b"<Id>S-1</Id>", b""), "schema"),
        (
            lambda d: d.replace(
                b"<?xml version='1.0' encoding='UTF-8'?>",
                b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x 'y'>]>",
            ),
            "document type",
        ),
    ],
)
def test_a_malformed_camt053_is_refused_with_what_is_wrong(mangle, problem) -> None:  # type: ignore[no-untyped-def]
    good = bank_camt053("S-1", [{"amount": "125.50", "ref": "BK-1", "e2e": ["a" * 32]}])
    with pytest.raises(StatementInvalid, match=problem):
        camt053.parse(mangle(good), XSD)


# ---- MT940 ----------------------------------------------------------------------------------------


def test_an_mt940_statement_gives_the_same_entries() -> None:
    data = bank_mt940(
        "REF000001",
        [
            ("D", "125,50", f"/EREF/{'a' * 32}/PREF/PMT-9/NTX/2/"),
            ("RD", "125,5", f"/EREF/{'a' * 32}/RTRN/AC04/"),
            ("C", "7,", "funding"),
        ],
    )
    [statement] = mt940.parse(data)
    assert (statement.format, statement.account) == ("mt940", IBAN)
    assert statement.statement_id == "REF000001/00001/1"
    debit, back, funding = statement.entries
    assert (debit.amount_hundredths, debit.currency, debit.credit) == (12550, "EUR", False)
    assert (debit.end_to_end_ids, debit.batch_reference, debit.batch_count) == (("a" * 32,), "PMT-9", 2)
    assert debit.servicer_reference.startswith("MT")
    assert back.returned and back.credit and back.amount_hundredths == 12550 and back.return_reason == "AC04"
    assert funding.credit and not funding.returned and funding.amount_hundredths == 700


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"", "no statement"),
        (b"%PDF-1.4 not a statement", "no statement"),
        (b":20:X\r\n:25:NL91\r\n:60F:C261207EUR1,00\r\n:61:BADLINE\r\n:62F:C261207EUR1,00\r\n-", ":61: line"),
        (b":20:X\r\n:25:NL91\r\n:60F:C261207EUR1,00\r\n:61:2612071207D1,00NTRFNONREF\r\n-", "closing balance"),
        (b":20:X\r\n:60F:C261207EUR1,00\r\n:61:2612071207D1,00NTRFNONREF\r\n:62F:C261207EUR1,00\r\n-", "account"),
        (
            b":20:X\r\n:25:NL91\r\n:60F:C261207EUR1,00\r\n:61:2612071207D1,005NTRFNONREF\r\n:62F:C261207EUR1,00\r\n-",
            "more than two decimals",
        ),
    ],
)
def test_a_malformed_mt940_is_refused_with_what_is_wrong(text: bytes, problem: str) -> None:
    with pytest.raises(StatementInvalid, match=problem):
        mt940.parse(text)


# ---- matching -------------------------------------------------------------------------------------


def entry(number: int, hundredths: int, **fields: object) -> EntryRecord:
    values: dict[str, object] = {
        "number": number,
        "amount_hundredths": hundredths,
        "currency": "EUR",
        "credit": False,
        "booked": True,
        "booking_date": dt.date.today(),
        "end_to_end_ids": (),
        "servicer_reference": "",
        "batch_reference": "",
        "batch_count": 0,
        "returned": False,
        "return_reason": "",
    }
    values.update(fields)
    return EntryRecord(**values)  # type: ignore[arg-type]


def payment(number: int, hundredths: int, status: S = S.SUCCEEDED, rail_reference: str = "") -> PaymentKeys:
    return PaymentKeys(1, number, status, hundredths, "EUR", str(uuid.uuid4()), rail_reference)


def test_the_end_to_end_id_is_the_one_the_iso20022_rail_writes() -> None:
    for key in (str(uuid.uuid4()), "not-a-uuid-key#retry1"):
        assert iso20022_end_to_end_id(key) == pain001.end_to_end_id(key)


def test_an_iso20022_batch_booking_matches_by_its_payment_information_id() -> None:
    # The ISO 20022 rail stores a batch booking's PmtInfId as the rail_reference of the payments it settled.
    paid = [payment(n, 1000 * n, rail_reference="GPO0123456789abcdefEUR") for n in (1, 2, 3)]
    other = payment(4, 999)
    matcher = Matcher(
        [
            entry(1, 6000, batch_reference="GPO0123456789abcdefEUR", batch_count=3),
            entry(2, 6000, batch_reference="GPO0123456789abcdefEUR", batch_count=4),
        ]
    )
    matcher.offer([*paid, other])
    good, wrong_count = matcher.results()
    assert good.outcome is Outcome.MATCHED and [p.number for p in good.payments] == [1, 2, 3]
    assert wrong_count.outcome is Outcome.AMOUNT_MISMATCH and "4 transactions" in wrong_count.note


def test_each_entry_gets_its_outcome() -> None:
    a, b, c, d = payment(1, 500), payment(2, 700), payment(3, 900, S.FAILED), payment(4, 100)
    retried = iso20022_end_to_end_id(d.idempotency_key) + "R01"  # a later attempt's EndToEndId
    matcher = Matcher(
        [
            entry(1, 500, end_to_end_ids=(iso20022_end_to_end_id(a.idempotency_key),)),
            entry(2, 701, end_to_end_ids=(b.idempotency_key,)),
            entry(3, 900, end_to_end_ids=(iso20022_end_to_end_id(c.idempotency_key),)),
            entry(4, 500, credit=True, returned=True, end_to_end_ids=(iso20022_end_to_end_id(a.idempotency_key),)),
            entry(5, 100, end_to_end_ids=(retried,)),
            entry(6, 100, end_to_end_ids=("unknown",)),
            entry(7, 100, credit=True),
            entry(8, 500, booked=False, end_to_end_ids=(a.idempotency_key,)),
        ]
    )
    matcher.offer([a, b])
    matcher.offer([c, d])
    outcomes = [r.outcome for r in matcher.results()]
    assert outcomes == [
        Outcome.MATCHED,
        Outcome.AMOUNT_MISMATCH,
        Outcome.PAID_NOT_SUCCEEDED,
        Outcome.RETURNED,
        Outcome.MATCHED,
        Outcome.UNMATCHED,
        Outcome.OTHER_CREDIT,
        Outcome.NOT_BOOKED,
    ]


def test_a_return_of_payments_not_paid_in_gpo_needs_an_operator() -> None:
    sent, failed, paid, reversed_ = (
        payment(1, 100, S.SENT),
        payment(2, 200, S.FAILED),
        payment(3, 300),
        payment(4, 400, S.REVERSED),
    )
    matcher = Matcher(
        [
            entry(1, 100, credit=True, returned=True, end_to_end_ids=(sent.idempotency_key,)),
            # A batch return: one payment paid, one FAILED in GPO.
            entry(2, 500, credit=True, returned=True, end_to_end_ids=(failed.idempotency_key, paid.idempotency_key)),
            # Returned again on a later statement: already REVERSED needs nobody.
            entry(3, 400, credit=True, returned=True, end_to_end_ids=(reversed_.idempotency_key,)),
        ]
    )
    matcher.offer([sent, failed, paid, reversed_])
    one, batch, again = matcher.results()
    assert one.outcome is Outcome.RETURN_NOT_SUCCEEDED and "number 1 (sent)" in one.note
    assert batch.outcome is Outcome.RETURN_NOT_SUCCEEDED and "number 2 (failed)" in batch.note
    assert [p.number for p in batch.payments] == [2, 3]
    assert again.outcome is Outcome.RETURNED
    assert Outcome.RETURN_NOT_SUCCEEDED in PROBLEMS and Outcome.RETURN_NOT_SUCCEEDED in CONFIRMING
