"""The ISO 20022 bank-file rail: writer and parsers, conformance of every pain.001 to the XSD, the rail
against the test bank (drop folder and SFTP), and end to end on PostgreSQL + RabbitMQ through a separate
`gpo-sidecar` process.

The XSD is read at test time from the shared specifications (spec_path); the tests skip without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpo_kernel.rails_config import ConfigError, RailConfig, load_rails_config
from rail_sidecars.rails.base import Outcome, RailPayment, RetryableRailError
from rail_sidecars.rails.iso20022 import codes, pain001, reports
from rail_sidecars.rails.iso20022.delivery import TransportError
from rail_sidecars.rails.iso20022.delivery_folder import FolderTransport
from rail_sidecars.rails.iso20022.delivery_sftp import SftpSettings, SftpTransport
from rail_sidecars.rails.iso20022.rail import Iso20022Rail, from_config
from rail_sidecars.rails.iso20022.settings import Iso20022Settings
from rail_sidecars.rails.registry import make_rail
from rail_sidecars.sdk.notes import MemoryRailNotes
from tests.peers.bank import Bank, Behaviour, Instruction
from tests.peers.conformance import counted
from tests.support.processes import Cluster, service_urls, spec_path
from tests.support.rail_notes import InterleavedRailNotes

XSD = "iso20022/pain.001.001.09.xsd"
NS = {"p": pain001.NAMESPACE}
DEBTOR = pain001.Debtor("Ministry of Social Protection", "DE89370400440532013000", "COBADEFFXXX")


@pytest.fixture(scope="module")
def xsd_path() -> Path:
    return spec_path(XSD)


@pytest.fixture(scope="module")
def schema(xsd_path: Path) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(xsd_path))


def iban(country: str, bban: str) -> str:
    """An IBAN with correct check digits."""
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def payment(
    i: int, *, amount: str | None = None, payee_fa: str | None = None, currency: str = "EUR"
) -> RailPayment:
    return RailPayment(
        idempotency_key=str(uuid.uuid4()),
        reference_id=f"ref-{i}",
        payer_fa="account:treasury-001@central-bank",
        payee_fa=payee_fa or f"account:{1_000_000 + i}@bank-a",
        amount=amount or f"{i}.{i % 100:02d}",
        currency_code=currency,
        payee_name=f"Beneficiary {i}",
        note="monthly cash transfer",
        purpose="cash-transfer",
        batch="batches/00000000-0000-0000-0000-000000000001",
        payment_number=i,
    )


def e2e(p: RailPayment, attempt: int = 0) -> str:
    return pain001.end_to_end_id(p.idempotency_key, attempt)


# The writer.


def test_end_to_end_id_fits_35_characters_and_is_stable() -> None:
    key = "0f85f75c-5615-48a7-91dd-4e428a908dae"
    assert pain001.end_to_end_id(key) == "0f85f75c561548a791dd4e428a908dae"
    assert pain001.end_to_end_id(key.upper()) == pain001.end_to_end_id(key)
    assert pain001.end_to_end_id(key, 1) == "0f85f75c561548a791dd4e428a908daeR01"
    assert len(pain001.end_to_end_id(key, pain001.MAX_ATTEMPTS)) == 35
    other = pain001.end_to_end_id("not a uuid, and much longer than thirty-five characters")
    assert len(other) == 32 and other == pain001.end_to_end_id(
        "not a uuid, and much longer than thirty-five characters"
    )
    with pytest.raises(ValueError):
        pain001.end_to_end_id(key, pain001.MAX_ATTEMPTS + 1)


def test_message_id_depends_only_on_the_set_of_transfers() -> None:
    assert pain001.message_id(["b", "a"]) == pain001.message_id(["a", "b"])
    assert pain001.message_id(["a"]) != pain001.message_id(["a", "b"])
    assert len(pain001.message_id(["a"])) == 35


def test_creditor_accounts() -> None:
    good = iban("DE", "370400440532013000")
    assert pain001.creditor_account(f"iban:{good}@COBADEFFXXX") == pain001.CreditorAccount(
        iban=good, agent_bic="COBADEFFXXX"
    )
    assert pain001.creditor_account(f"account:{good}@bank-a").iban == good  # a valid IBAN is written as one
    assert pain001.creditor_account("account:12345678@bank-a") == pain001.CreditorAccount(
        other="12345678", agent_id="bank-a"
    )
    assert pain001.creditor_account("account:KE12345678@bank-a").other == "KE12345678"  # not a valid IBAN
    for bad in ("iban:DE00370400440532013000@bank", "mobile:254700000001@mpesa", f"account:{'9' * 35}@bank"):
        with pytest.raises(pain001.InvalidPayee):
            pain001.creditor_account(bad)


def test_amounts_follow_the_currency() -> None:
    assert pain001.format_amount(12550, "EUR") == "125.50"
    assert pain001.format_amount(1, "KES") == "0.01"
    assert pain001.format_amount(50000, "JPY") == "500"
    with pytest.raises(ValueError):
        pain001.format_amount(50001, "JPY")


_CURRENCIES = st.sampled_from(["EUR", "KES", "JPY", "BHD", "USD"])
_ACCOUNT_IDS = st.from_regex(r"[A-Za-z0-9._+-]{1,34}", fullmatch=True)
_PROVIDERS = st.sampled_from(["bank-a", "COBADEFFXXX", "NWBKGB2L", "x" * 60, "b.c_d"])
_TEXT = st.text(min_size=0, max_size=300)


@st.composite
def _transfers(draw: st.DrawFn) -> list[pain001.Transfer]:
    count = draw(st.integers(min_value=1, max_value=30))
    found = []
    for i in range(count):
        currency = draw(_CURRENCIES)
        hundredths = draw(st.integers(min_value=1, max_value=10**15 - 1))
        if currency == "JPY":
            hundredths = hundredths // 100 * 100 or 100
        fa = draw(
            st.one_of(
                st.builds(lambda a, p: f"account:{a}@{p}", _ACCOUNT_IDS, _PROVIDERS),
                st.builds(
                    lambda n, p: f"iban:{iban('DE', f'{n:018d}')}@{p}", st.integers(0, 10**18 - 1), _PROVIDERS
                ),
            )
        )
        try:
            account = pain001.creditor_account(fa)
        except pain001.InvalidPayee:
            continue
        found.append(
            pain001.Transfer(
                end_to_end_id=pain001.end_to_end_id(
                    str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))), i % 3
                ),
                hundredths=hundredths,
                currency=currency,
                creditor_name=draw(_TEXT),
                account=account,
                remittance=draw(_TEXT),
                purpose=draw(st.one_of(st.just(""), st.just("SSBE"), _TEXT)),
            )
        )
    return found or [pain001.Transfer("x" * 35, 1, "EUR", "", pain001.CreditorAccount(other="1"))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfers=_transfers(), with_type=st.booleans())
def test_every_pain001_validates_and_sums_exactly(
    schema: xmlschema.XMLSchema, transfers: list[pain001.Transfer], with_type: bool
) -> None:
    kind = pain001.PaymentType("SEPA", "SSBE") if with_type else None
    debtor = pain001.Debtor(DEBTOR.name, DEBTOR.iban, DEBTOR.bic, "Treasury & <Co>", "CUST-001")
    msg_id = pain001.message_id(t.end_to_end_id for t in transfers)
    body = pain001.build(msg_id, datetime.now(UTC), date.today(), debtor, transfers, kind)
    schema.validate(body.decode())  # raises with the first violation
    document = ET.fromstring(body)
    assert document.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:NbOfTxs", namespaces=NS) == str(len(transfers))
    control = Decimal(document.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=NS) or "")
    assert control == sum(Decimal(t.hundredths) / 100 for t in transfers)
    amounts = document.findall(".//p:InstdAmt", namespaces=NS)
    assert sorted(Decimal(a.text or "") for a in amounts) == sorted(
        Decimal(t.hundredths) / 100 for t in transfers
    )
    ids = [e.text for e in document.findall(".//p:EndToEndId", namespaces=NS)]
    assert ids == [
        t.end_to_end_id for t in sorted(transfers, key=lambda t: t.currency)
    ]  # a block per currency
    for block in document.findall("p:CstmrCdtTrfInitn/p:PmtInf", namespaces=NS):
        block_amounts = [Decimal(a.text or "") for a in block.findall(".//p:InstdAmt", namespaces=NS)]
        assert Decimal(block.findtext("p:CtrlSum", namespaces=NS) or "") == sum(block_amounts)
        assert {a.get("Ccy") for a in block.findall(".//p:InstdAmt", namespaces=NS)} == {
            (block.findtext("p:PmtInfId", namespaces=NS) or "")[-3:]
        }


# The parsers.

_PAIN002 = """<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.{version}">
 <CstmrPmtStsRpt>
  <GrpHdr><MsgId>RPT-1</MsgId><CreDtTm>2024-01-01T10:00:00</CreDtTm></GrpHdr>
  <OrgnlGrpInfAndSts><OrgnlMsgId>GPO123</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>
   <GrpSts>{group}</GrpSts>{group_reason}</OrgnlGrpInfAndSts>
  <OrgnlPmtInfAndSts><OrgnlPmtInfId>GPO123EUR</OrgnlPmtInfId>
   <TxInfAndSts><OrgnlEndToEndId>E1</OrgnlEndToEndId><TxSts>RJCT</TxSts>
    <StsRsnInf><Rsn><Cd>AC04</Cd></Rsn><AddtlInf>account closed</AddtlInf><AddtlInf>in 2023</AddtlInf></StsRsnInf>
    <AcctSvcrRef>REF1</AcctSvcrRef></TxInfAndSts>
   <TxInfAndSts><StsId>S2</StsId><OrgnlEndToEndId>E2</OrgnlEndToEndId><TxSts>ACSC</TxSts></TxInfAndSts>
  </OrgnlPmtInfAndSts>
 </CstmrPmtStsRpt>
</Document>"""


def fed(kind: str, text: str) -> bytes:
    """A report a test feeds the parser, first checked under the XSD of the shared specifications
    (pain.002.001.11, camt.054.001.08); other versions of the same content are checked with their
    namespace set to those versions (the elements these tests use are the same in each)."""
    from lxml import etree

    target = {"pain.002": "pain.002.001.11", "camt.054": "camt.054.001.08"}[kind]
    schema = _report_schema(target)
    data = text.encode()
    checked = re.sub(rb"xsd:" + kind.encode() + rb"\.001\.\d\d", b"xsd:" + target.encode(), data)
    valid = schema.validate(etree.fromstring(checked))
    counted("iso20022 (XSD)", f"{target} fed by a test", [] if valid else ["invalid"])
    assert valid, schema.error_log.last_error
    return data


@functools.cache
def _report_schema(name: str) -> Any:
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(spec_path(f"iso20022/{name}.xsd"))))


@pytest.mark.parametrize("version", ["03", "10", "11", "12"])
def test_parse_pain002_any_version(version: str) -> None:
    report = reports.parse(fed("pain.002", _PAIN002.format(version=version, group="PART", group_reason="")))
    assert isinstance(report, reports.StatusReport)
    assert (report.msg_id, report.original_msg_id, report.group_status) == ("RPT-1", "GPO123", "PART")
    (block,) = report.payment_information
    first, second = block.transactions
    assert first == reports.TransactionStatus(
        "E1", "RJCT", (reports.StatusReason("AC04", "account closed in 2023"),), "REF1"
    )
    assert (second.end_to_end_id, second.status, second.reference) == ("E2", "ACSC", "S2")


def test_parse_pain002_group_rejection() -> None:
    text = _PAIN002.format(
        version="10", group="RJCT", group_reason="<StsRsnInf><Rsn><Cd>DU01</Cd></Rsn></StsRsnInf>"
    )
    report = reports.parse(fed("pain.002", text))
    assert isinstance(report, reports.StatusReport)
    assert report.group_reasons == (reports.StatusReason("DU01", ""),)


_CAMT054 = """<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.{version}">
 <BkToCstmrDbtCdtNtfctn>
  <GrpHdr><MsgId>NTF-1</MsgId><CreDtTm>2024-01-01T10:00:00</CreDtTm></GrpHdr>
  <Ntfctn><Id>N1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
   <Ntry><Amt Ccy="EUR">10.50</Amt><CdtDbtInd>CRDT</CdtDbtInd>{status}<AcctSvcrRef>RET-9</AcctSvcrRef>
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>RRTN</SubFmlyCd></Fmly></Domn></BkTxCd>
    <NtryDtls><TxDtls><Refs><EndToEndId>E1</EndToEndId></Refs>
     <RtrInf><Rsn><Cd>MD07</Cd></Rsn><AddtlInf>deceased</AddtlInf></RtrInf></TxDtls></NtryDtls></Ntry>
   <Ntry><Amt Ccy="EUR">3.00</Amt><CdtDbtInd>DBIT</CdtDbtInd>{status}
    <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
    <NtryDtls><TxDtls><Refs><EndToEndId>E2</EndToEndId></Refs><Amt Ccy="EUR">1.00</Amt></TxDtls>
     <TxDtls><Refs><EndToEndId>E3</EndToEndId></Refs><Amt Ccy="EUR">2.00</Amt></TxDtls>
     <TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>
  </Ntfctn>
 </BkToCstmrDbtCdtNtfctn>
</Document>"""


@pytest.mark.parametrize(
    ("version", "status"), [("02", "<Sts>BOOK</Sts>"), ("08", "<Sts><Cd>BOOK</Cd></Sts>")]
)
def test_parse_camt054_returns_and_debits(version: str, status: str) -> None:
    text = _CAMT054.format(version=version, status=status)
    if version == "08":  # the 02 form (plain <Sts>) is not camt.054.001.08: parsed, not validated
        fed("camt.054", text)
    notification = reports.parse(text.encode())
    assert isinstance(notification, reports.Notification)
    returned, debit2, debit3 = notification.transactions
    assert returned.returned and returned.credit and returned.booked
    assert returned.return_reason == reports.StatusReason("MD07", "deceased")
    assert (returned.amount, returned.currency, returned.reference) == ("10.50", "EUR", "RET-9")
    assert not debit2.returned and not debit2.credit and debit2.booked
    assert (debit2.amount, debit3.amount) == ("1.00", "2.00")


@pytest.mark.parametrize(
    "data",
    [
        b"not xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>',
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt/></Document>',
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt/></Document>',
    ],
)
def test_unreadable_reports_are_refused(data: bytes) -> None:
    with pytest.raises(reports.ReportError):
        reports.parse(data)


def test_reason_codes() -> None:
    assert codes.reason("AC04", "closed in May") == (
        "rjct.payee_fa.invalid",
        "AC04 closed account number: closed in May",
    )
    assert codes.reason("AM04")[0] == "rjct.payer.insufficient_funds"
    assert codes.reason("ZZ99")[0] == "rjct.rail.error"


# The rail against the test bank, through a drop folder.


def rule(instruction: Instruction) -> tuple[str, str] | None:
    """The bank's books: accounts ending in 13 are closed, in 57 the payer's funds run short."""
    if instruction.creditor_account.endswith("13"):
        return "AC04", "account closed"
    if instruction.creditor_account.endswith("57"):
        return "AM04", "insufficient funds"
    return None


Setup = Callable[..., Any]


@pytest.fixture
async def setup(tmp_path: Path, xsd_path: Path, schema: xmlschema.XMLSchema) -> AsyncIterator[Setup]:
    """make(behaviour=…, **settings) -> (bank, rail); everything is stopped at the end. Every rail made
    shares the test's rail notes (as a restarted sidecar or another replica would), unless notes= says."""
    opened: list[Any] = []
    shared = MemoryRailNotes()

    async def make(behaviour: Behaviour | None = None, **overrides: Any) -> tuple[Bank, Iso20022Rail]:
        bank = next((o for o in opened if isinstance(o, Bank)), None)
        if bank is None:
            bank = await Bank(tmp_path / "bank", xsd_path, behaviour).start()
            opened.append(bank)
        options: dict[str, Any] = {
            "pain001_dir": str(bank.inbound),
            "reports_dir": str(bank.outbound),
            "debtor": DEBTOR,
            "xsd_path": xsd_path,
            "poll_interval_s": 0.05,
            "report_timeout_s": 10.0,
            "reversal_grace_s": 0.0,
            **overrides,
        }
        transport = options.pop("transport_object", None)
        notes = options.pop("notes", shared)
        rail = Iso20022Rail(Iso20022Settings(**options), transport, notes=notes)
        await rail.start()
        opened.append(rail)
        return bank, rail

    yield make
    for thing in reversed(opened):
        if isinstance(thing, Iso20022Rail):
            await thing.close()
        else:
            await thing.stop()
    # Conformance: every pain.001 the rail delivered in the test, checked by the bank (lxml) and again here.
    for bank in (o for o in opened if isinstance(o, Bank)):
        assert not bank.invalid
        for path in bank.archive.iterdir():
            schema.validate(str(path))
        # Every pain.002 and camt.054 it wrote is valid under its XSD; every text was in the Latin set.
        assert bank.report_violations == []
        assert bank.charset_violations == []


async def test_execute_reports_the_banks_outcomes(setup: Setup) -> None:
    bank, rail = await setup(
        Behaviour(reject=rule, interim_report=True, duplicate_reports=True, report_delay_s=0.1)
    )
    payments = [payment(i) for i in range(1, 201)]
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert len(results) == 200 and len(bank.files) == 1 and not bank.invalid
    for p in payments:
        entry = bank.ledger[e2e(p)]
        assert entry.instruction.amount == Decimal(p.amount) and entry.instruction.currency == "EUR"
        r = results[p.idempotency_key]
        assert (r.batch, r.payment_number) == (p.batch, p.payment_number)
        if entry.status == "ACSC":
            assert (r.outcome, r.reason_code, r.rail_reference) == (Outcome.SUCCEEDED, "", entry.reference)
        else:
            assert r.outcome is Outcome.FAILED
            expected = {"AC04": "rjct.payee_fa.invalid", "AM04": "rjct.payer.insufficient_funds"}[
                entry.reason
            ]
            assert r.reason_code == expected and entry.reason in r.reason_message
    assert 0 < len(bank.rejected()) < 200
    # Asked again, the rail answers from its records and sends nothing.
    again = await rail.look_up([p.idempotency_key for p in payments] + [str(uuid.uuid4())])
    assert again == results
    assert await rail.execute(
        [p for p in payments if results[p.idempotency_key].outcome is Outcome.SUCCEEDED]
    )
    assert len(bank.files) == 1


async def test_success_from_debit_notifications_when_the_report_lists_only_rejections(setup: Setup) -> None:
    bank, rail = await setup(Behaviour(reject=rule, list_accepted=False))
    payments = [payment(i) for i in range(1, 101)]
    results = await rail.execute(payments)
    assert len(results) == 100
    assert sum(r.outcome is Outcome.SUCCEEDED for r in results) == len(bank.paid())


async def test_group_acceptance_without_transaction_detail(setup: Setup) -> None:
    _, rail = await setup(Behaviour(list_accepted=False, debit_notifications=False))
    results = await rail.execute([payment(i) for i in range(1, 11)])
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 10  # group ACSC covers every transfer


def _booking_flags(bank: Bank) -> set[str]:
    flags = set()
    for path in bank.archive.iterdir():
        root = ET.parse(path).getroot()
        flags |= {e.text or "" for e in root.iter(f"{{{pain001.NAMESPACE}}}BtchBookg")}
    return flags


async def test_batch_booking_is_set_from_configuration_and_a_batch_entry_settles_its_block(
    setup: Setup,
) -> None:
    """Issue 14.4: BtchBookg in every file from configuration, and a camt.054 entry booked for a whole
    PmtInfId (NtryDtls/Btch, no transaction details) settles its payments (0 of 20 were decided)."""
    bank, rail = await setup(Behaviour(reject=rule, list_accepted=False), batch_booking=True)
    payments = [payment(i) for i in range(1, 21)] + [payment(13, payee_fa="account:1000013@bank-a")]
    results = {r.idempotency_key: r for r in await rail.execute(payments)}
    assert len(results) == 21 and bank.batch_entries == 1
    assert _booking_flags(bank) == {"true"}
    for p in payments:
        entry = bank.ledger[e2e(p)]
        expected = Outcome.SUCCEEDED if entry.status == "ACSC" else Outcome.FAILED
        assert results[p.idempotency_key].outcome is expected
    assert sum(r.outcome is Outcome.SUCCEEDED for r in results.values()) == len(bank.paid()) == 19


async def test_without_batch_booking_every_file_says_false(setup: Setup) -> None:
    bank, rail = await setup()
    await rail.execute([payment(i) for i in range(1, 4)])
    assert _booking_flags(bank) == {"false"}


async def test_a_bank_that_answers_only_acsp(setup: Setup, xsd_path: Path, tmp_path: Path) -> None:
    """Issue 14.4: ACSP (settlement in process) is final only when configured (acsp_final)."""
    _, rail = await setup(Behaviour(success_status="ACSP", debit_notifications=False), report_timeout_s=0.5)
    payments = [payment(i) for i in range(1, 6)]
    assert await rail.execute(payments) == []  # not final by default: undecided, looked up later
    _, final = await setup(success_statuses=frozenset({"ACSC", "ACCC", "ACSP"}), notes=MemoryRailNotes())
    results = await final.execute([payment(i) for i in range(6, 11)])
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 5
    options = {
        "pain001_dir": "in",
        "reports_dir": "out",
        "debtor_name": "Ministry",
        "debtor_iban": DEBTOR.iban,
        "debtor_bic": DEBTOR.bic,
        "xsd_path": str(xsd_path),
    }
    from rail_sidecars.rails.iso20022.settings import settings_from_config as iso_settings

    assert "ACSP" not in iso_settings(RailConfig("b", "iso20022", options=options)).success_statuses
    with_acsp = iso_settings(RailConfig("b", "iso20022", options={**options, "acsp_final": True}))
    assert "ACSP" in with_acsp.success_statuses and "ACSC" in with_acsp.success_statuses


async def test_names_and_texts_go_out_in_the_latin_character_set(setup: Setup) -> None:
    """Issue 14.4: names and remittance texts beyond the SWIFT/EPC Latin set went out (426 names, 586
    texts); they are transliterated in the file, and the bank (which checks) finds none outside it."""
    bank, rail = await setup()
    named = [
        dataclasses.replace(payment(1), payee_name="Zoë Ørsted & Søn", note="Miete Straße 5 \u2013 März; #3"),
        dataclasses.replace(payment(2), payee_name="Иван Петров", note="пенсия"),
        dataclasses.replace(payment(3), payee_name="Łucja Żółć", note="zasiłek"),
    ]
    results = await rail.execute(named)
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 3
    names = {e.instruction.creditor_name for e in bank.ledger.values()}
    assert names == {"Zoe Orsted + Son", "Ivan Petrov", "Lucja Zolc"}
    texts = {e.instruction.remittance for e in bank.ledger.values()}
    assert "Miete Strasse 5 - Marz, 3" in texts and "pensiya" in texts
    assert bank.charset_violations == []
    # The original stays with GPO (the payment itself is not changed), and "unicode" sends it as it is.
    assert named[0].payee_name == "Zoë Ørsted & Søn"
    transfer = pain001.Transfer("E1", 100, "EUR", "Zoë", pain001.CreditorAccount(other="1"), "Straße")
    raw = pain001.build("M1", datetime.now(UTC), date.today(), DEBTOR, [transfer], charset="unicode")
    assert "Zoë".encode() in raw and "Straße".encode() in raw


async def test_concurrent_deliveries_of_one_chunk_send_one_file(setup: Setup) -> None:
    bank, rail = await setup()
    payments = [payment(i) for i in range(1, 51)]
    first, second = await asyncio.gather(rail.execute(payments), rail.execute(list(reversed(payments))))
    assert len(first) == len(second) == 50
    assert len(bank.files) == 1 and not bank.duplicate_transfers


async def test_slow_bank_look_up_fails_until_the_status_arrives(setup: Setup) -> None:
    bank, rail = await setup(Behaviour(hold=True), report_timeout_s=0.3)
    payments = [payment(i) for i in range(1, 6)]
    assert await rail.execute(payments) == []  # nothing definite yet: the chunk will come back
    with pytest.raises(RetryableRailError):
        await rail.look_up([p.idempotency_key for p in payments])  # never "absent": it was sent
    bank.release()
    for _ in range(100):
        with contextlib.suppress(RetryableRailError):
            found = await rail.look_up([p.idempotency_key for p in payments])
            break
    assert {r.outcome for r in found.values()} == {Outcome.SUCCEEDED} and len(found) == 5
    assert len(bank.files) == 1


class FlakyTransport(FolderTransport):
    """Fails the first deliveries after writing nothing, or after the rename (the bank has the file)."""

    def __init__(self, bank: Bank, failures: int, after_rename: bool) -> None:
        super().__init__(bank.inbound, bank.outbound)
        self.failures = failures
        self.after_rename = after_rename

    async def deliver(self, name: str, data: bytes) -> None:
        if self.failures > 0:
            self.failures -= 1
            if self.after_rename:
                await super().deliver(name, data)
            raise TransportError("connection reset")
        await super().deliver(name, data)


@pytest.mark.parametrize("after_rename", [False, True])
async def test_a_failed_delivery_is_resent_as_the_same_file_after_a_restart(
    setup: Setup, tmp_path: Path, after_rename: bool
) -> None:
    bank, _ = await setup(Behaviour(reject=rule, hold=True))
    flaky = FlakyTransport(bank, failures=1, after_rename=after_rename)
    _, rail = await setup(transport_object=flaky, report_timeout_s=0.2)
    payments = [payment(i) for i in range(1, 21)]
    with pytest.raises(RetryableRailError):
        await rail.execute(payments)
    await rail.close()  # the sidecar dies; a new one verifies the chunk with the same key map
    _, restarted = await setup(report_timeout_s=0.2)
    with pytest.raises(RetryableRailError):  # delivered (again), not decided yet
        await restarted.look_up([p.idempotency_key for p in payments])
    bank.release()
    found: dict[str, Any] = {}
    for _ in range(100):
        with contextlib.suppress(RetryableRailError):
            found = dict(await restarted.look_up([p.idempotency_key for p in payments]))
            break
    assert len(found) == 20
    assert len(bank.files) == 1 and not bank.duplicate_transfers  # a second copy is refused as DU01
    assert sum(bank.copies.values()) == (2 if after_rename else 1)


async def test_a_second_replica_resumes_after_a_crash_between_delivery_and_report(setup: Setup) -> None:
    """Issue 19.1: a replica delivers a file and dies before the bank's report; another replica (a fresh
    object on the same notes, no files) reads the report, maps its EndToEndIds to keys through the notes
    and answers every key, without delivering anything again."""
    bank, first = await setup(Behaviour(reject=rule, hold=True), report_timeout_s=0.2)
    payments = [payment(i) for i in range(1, 31)]
    assert await first.execute(payments) == []  # delivered, undecided
    await first.close()  # the replica dies
    _, second = await setup(report_timeout_s=0.2)
    bank.release()
    found: dict[str, Any] = {}
    for _ in range(100):
        with contextlib.suppress(RetryableRailError):
            found = dict(await second.look_up([p.idempotency_key for p in payments]))
            break
    assert len(found) == 30
    for p in payments:
        entry = bank.ledger[e2e(p)]
        assert found[p.idempotency_key].outcome is (
            Outcome.FAILED if entry.status == "RJCT" else Outcome.SUCCEEDED
        )
    assert len(bank.files) == 1 and sum(bank.copies.values()) == 1 and not bank.duplicate_transfers


async def test_a_report_applied_twice_changes_nothing(setup: Setup) -> None:
    """Issue 19.1: two replicas read the same reports; whichever applies one first decides, a second
    application records nothing new (first-definite-wins), and both answer the same."""
    _, left = await setup(Behaviour(reject=rule))
    _, right = await setup()
    payments = [payment(i) for i in range(1, 21)]
    results = {r.idempotency_key: r for r in await left.execute(payments)}
    assert len(results) == 20
    assert await right.look_up(list(results)) == results
    for name in await left.transport.list_reports():
        report = reports.parse(await left.transport.fetch_report(name))
        if isinstance(report, reports.StatusReport):
            decisions = await right._status_decisions(report)
            assert decisions and await right._book.apply(name, "pain.002", decisions) == 0
    assert await left.look_up(list(results)) == results


async def test_two_replicas_recording_overlapping_chunks_send_each_key_once(setup: Setup) -> None:
    """Issue 19.1: two replicas record files for overlapping chunks at the same moment; each transfer's
    first note wins, the file holding a transfer recorded for the other is void (never delivered), and
    its other keys go out once, in a file of their own."""
    notes = InterleavedRailNotes()
    bank, left = await setup(notes=notes)
    _, right = await setup(notes=notes)
    payments = [payment(i) for i in range(1, 31)]
    outcomes = await asyncio.gather(left.execute(payments[:20]), right.execute(payments[10:]))
    results = {r.idempotency_key: r for part in outcomes for r in part}
    assert len(results) == 30
    paid = [e for e in bank.ledger if any(e in (e2e(p), e2e(p, 1)) for p in payments)]
    assert len(paid) == 30  # every key once, under one EndToEndId
    assert len(bank.files) == 2 and not bank.duplicate_transfers
    # The race did happen: three files were recorded, one of them void.
    assert len([n for n in notes.recorded if n.tag.endswith(".members")]) == 3


async def test_a_retry_after_a_definite_failure_is_a_new_transfer(setup: Setup) -> None:
    bank, rail = await setup(Behaviour(reject=rule))
    closed = payment(13, payee_fa="account:1000013@bank-a")
    (first,) = await rail.execute([closed])
    assert first.outcome is Outcome.FAILED
    (second,) = await rail.execute([closed])  # an operator's retry: EXECUTE again for the same key
    assert second.outcome is Outcome.FAILED
    assert {e2e(closed), e2e(closed, 1)} <= set(bank.ledger) and len(bank.files) == 2


async def test_payments_the_bank_could_only_refuse_are_not_sent(setup: Setup) -> None:
    bank, rail = await setup(debtor_currency="EUR")
    refused = [
        payment(1, payee_fa="mobile:254700000001@mpesa"),
        payment(2, payee_fa="iban:DE00370400440532013000@bank"),
        payment(3, currency="KES"),
        payment(4, amount="0.00"),
        payment(5, amount="1.5e3"),
    ]
    results = await rail.execute(refused)
    assert [r.reason_code for r in results] == [
        "rjct.payee_fa.invalid",
        "rjct.payee_fa.invalid",
        "rjct.currency_code.invalid",
        "rjct.amount.invalid",
        "rjct.amount.invalid",
    ]
    assert not bank.files


@pytest.mark.parametrize(
    ("via", "reason", "code"),
    [("camt.054", "AC04", "rjct.payee_fa.invalid"), ("pain.002", "MD07", "rjct.payee_fa.invalid")],
)
async def test_a_return_after_success_is_a_late_reversal(
    setup: Setup, via: str, reason: str, code: str
) -> None:
    bank, rail = await setup()
    payments = [payment(i) for i in range(1, 4)]
    await rail.execute(payments)
    late = rail.late_results()
    bank.return_payment(e2e(payments[1]), reason, via=via)
    result = await asyncio.wait_for(anext(late), 10)
    assert (result.idempotency_key, result.outcome, result.reason_code) == (
        payments[1].idempotency_key,
        Outcome.REVERSED,
        code,
    )
    assert (result.batch, result.payment_number) == (payments[1].batch, 2)
    assert reason in result.reason_message
    # Reported once: after the runner asked for the next one, it is not offered again.
    nothing = asyncio.ensure_future(anext(late))
    await asyncio.sleep(0.3)
    assert not nothing.done()
    nothing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await nothing
    await late.aclose()
    # The payment's own outcome stays what was first reported.
    assert (await rail.look_up([payments[1].idempotency_key]))[
        payments[1].idempotency_key
    ].outcome is Outcome.SUCCEEDED


async def test_a_return_waits_until_the_success_was_handed_over(setup: Setup) -> None:
    bank, rail = await setup(Behaviour(hold=True), report_timeout_s=0.2)
    p = payment(1)
    assert await rail.execute([p]) == []
    bank.release()
    await asyncio.sleep(0.3)  # the bank's statuses are read, but the runner has not been told
    bank.return_payment(e2e(p))
    late = rail.late_results()
    pending = asyncio.ensure_future(anext(late))
    await asyncio.sleep(0.3)
    assert not pending.done()  # GPO still holds the payment as SENT: a REVERSED now would be lost
    found = await rail.look_up([p.idempotency_key])
    assert found[p.idempotency_key].outcome is Outcome.SUCCEEDED
    assert (await asyncio.wait_for(pending, 5)).outcome is Outcome.REVERSED
    await late.aclose()


# SFTP.


async def test_sftp_delivery_with_a_refused_upload(setup: Setup, tmp_path: Path) -> None:
    bank, _ = await setup(Behaviour(refuse_uploads=1))
    access = await bank.start_sftp()
    sftp = SftpSettings(
        access.host,
        access.port,
        access.username,
        "/inbound",
        "/outbound",
        private_key=access.client_private_key,
        host_key=access.host_public_key,
        timeout_s=10,
    )
    _, rail = await setup(
        transport="sftp",
        sftp=sftp,
        transport_object=SftpTransport(sftp),
        pain001_dir="/inbound",
        reports_dir="/outbound",
    )
    payments = [
        payment(i, payee_fa=f"iban:{iban('GB', f'WEST{123456980 + i:014d}')}@NWBKGB2L") for i in range(1, 6)
    ]
    with pytest.raises(RetryableRailError):
        await rail.execute(payments)  # permission denied on upload: recorded, not delivered
    results = await rail.look_up([p.idempotency_key for p in payments])
    assert {r.outcome for r in results.values()} == {Outcome.SUCCEEDED} and len(results) == 5
    assert len(bank.files) == 1


async def test_sftp_refuses_a_server_with_another_host_key(setup: Setup) -> None:
    bank, _ = await setup()
    access = await bank.start_sftp()
    import asyncssh

    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    transport = SftpTransport(
        SftpSettings(
            access.host,
            access.port,
            access.username,
            "/inbound",
            "/outbound",
            private_key=access.client_private_key,
            host_key=impostor,
            timeout_s=10,
        )
    )
    with pytest.raises(TransportError):
        await transport.list_reports()
    await transport.close()


# Configuration.


def test_configuration_from_the_rails_file(
    tmp_path: Path, xsd_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "BANK_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"
    )
    path = tmp_path / "rails.toml"
    path.write_text(
        f"""
[rails.bank]
kind = "iso20022"
routes = ["iban:*", "account:*@bank-a"]
timeout_s = 12
[rails.bank.options]
transport = "sftp"
pain001_dir = "/in"
reports_dir = "/out"
sftp_host = "sftp.bank.example"
sftp_user = "treasury"
sftp_private_key = {{ env = "BANK_KEY" }}
sftp_host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
debtor_name = "Treasury"
debtor_iban = "DE89370400440532013000"
debtor_bic = "COBADEFFXXX"
category_purpose = "SSBE"
xsd_path = "{xsd_path}"
success_statuses = ["ACSC"]
"""
    )
    config = load_rails_config(path).rails["bank"]
    rail = make_rail(config, notes=MemoryRailNotes())
    assert isinstance(rail, Iso20022Rail)
    s = rail.settings
    assert s.sftp is not None and s.sftp.private_key.startswith("-----BEGIN") and s.sftp.timeout_s == 12
    assert s.success_statuses == frozenset({"ACSC"}) and s.payment_type.category_purpose == "SSBE"

    def broken(**options: Any) -> None:
        base = {
            "pain001_dir": "/in",
            "reports_dir": "/out",
            "debtor_name": "T",
            "debtor_iban": "DE89370400440532013000",
            "debtor_bic": "COBADEFFXXX",
            "xsd_path": str(xsd_path),
        }
        with pytest.raises(ConfigError):
            from_config(RailConfig("bank", "iso20022", options={**base, **options}), notes=MemoryRailNotes())

    broken(debtor_iban="DE00370400440532013000")
    broken(debtor_bic=None)
    broken(unknown_option=1)
    broken(xsd_path=str(tmp_path / "missing.xsd"))
    broken(transport="sftp", sftp_host="h", sftp_user="u", sftp_password="p")  # no host key check
    broken(transport="ftp")
    broken(state_dir=str(tmp_path))  # gone: no local state any more


# End to end: PostgreSQL + RabbitMQ, the orchestrator and a gpo-sidecar process, the bank over SFTP.


def _payee(i: int) -> str:
    if i % 997 == 0:
        return f"mobile:2547{i:08d}@mpesa"  # not a bank account: the rail refuses it without sending
    if i % 2:
        return f"iban:{iban('DE', f'37040044{i:010d}')}@COBADEFFXXX"
    return f"account:{5_000_000 + i}@bank-a"


def _e2e_rule(instruction: Instruction) -> tuple[str, str] | None:
    account = instruction.creditor_account
    if account.endswith("13"):
        return "AC04", "account closed"
    if account.endswith("57"):
        return "AM04", "insufficient funds"
    return None


async def _delete_queues(amqp_url: str, rail: str) -> None:
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in (f"gpo.rail.{rail}", f"gpo.rail.{rail}.dead"):
                await channel.queue_delete(name)


@pytest.mark.e2e
async def test_five_thousand_payments_to_the_bank_end_to_end(tmp_path: Path, xsd_path: Path) -> None:
    from gpo.v1 import disbursement_service_pb2 as api_pb
    from gpo.v1 import resources_pb2 as res_pb

    from gpo_server.client import GpoClient, chunked

    database_url, amqp_url = service_urls()
    rail = f"bank{uuid.uuid4().hex[:10]}"  # RabbitMQ is shared: a rail (queue) of this run's own
    bank = await Bank(
        tmp_path / "bank",
        xsd_path,
        Behaviour(
            reject=_e2e_rule,
            report_delay_s=0.3,
            interim_report=True,
            duplicate_reports=True,
            list_accepted=False,  # successes come from the camt.054 debit notifications
        ),
    ).start()
    access = await bank.start_sftp()
    config = tmp_path / "rails.toml"
    config.write_text(
        f"""
[rails.{rail}]
kind = "iso20022"
chunk_size = 1000
concurrency = 4
timeout_s = 15
[rails.{rail}.options]
transport = "sftp"
pain001_dir = "/inbound"
reports_dir = "/outbound"
sftp_host = "{access.host}"
sftp_port = {access.port}
sftp_user = "{access.username}"
sftp_private_key = {{ env = "BANK_SFTP_KEY" }}
sftp_host_key = "{access.host_public_key}"
debtor_name = "Ministry of Social Protection"
debtor_iban = "DE89370400440532013000"
debtor_bic = "COBADEFFXXX"
category_purpose = "SSBE"
xsd_path = "{xsd_path}"
report_timeout_s = 30
poll_interval_s = 0.2
reversal_grace_s = 1

[defaults]
default_rail = "{rail}"
"""
    )
    workdir = tmp_path / "gpo"
    workdir.mkdir()
    cluster = Cluster(
        workdir,
        database_url,
        amqp_url,
        rails_config=config,
        # A short claim lease: after the kill below, the new sidecar may verify the dead one's payments soon.
        extra_env={"BANK_SFTP_KEY": access.client_private_key, "GPO_CLAIM_LEASE_S": "10"},
    )
    client: GpoClient | None = None
    try:
        await asyncio.to_thread(
            cluster.start_orchestrator
        )  # blocking waits off the loop: the bank runs on it
        cluster.start_sidecar(rail, "--config", str(config))
        client = cluster.client(["g2p-test"])
        count = 5000
        inputs = [
            api_pb.PaymentInput(
                reference_id=f"ben-{i:05d}",
                payee_fa=_payee(i),
                amount=f"{(i * 7919) % 250_000 // 100 + 1}.{i % 100:02d}",
                currency_code="EUR",
                payee_name=f"Beneficiary {i} & family <main>",
                note="monthly cash transfer",
                purpose="SSBE",
            )
            for i in range(1, count + 1)
        ]
        header = api_pb.BatchHeader(
            program="g2p-test", request_id=str(uuid.uuid4()), payer_fa="account:treasury-001@central-bank"
        )
        crash = asyncio.create_task(_kill_sidecar_mid_run(cluster, rail, config, bank))
        upload = await client.upload(header, chunked(inputs, 1000))
        assert upload.rejected == 0
        name = upload.batch.name
        batch = await _wait_completed(client, name, cluster, deadline_s=150)
        assert batch.state == res_pb.BATCH_STATE_COMPLETED

        gpo = {p.reference_id: p async for p in client.payments(name)}
        assert len(gpo) == count
        final = {res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED}
        assert {p.status for p in gpo.values()} <= final, "every payment is final"
        sent = {pain001.end_to_end_id(p.idempotency_key): p for p in gpo.values()}
        # Never executed twice: one ledger entry per EndToEndId, no EndToEndId in two files, no MsgId twice.
        assert not bank.duplicate_transfers and not bank.invalid
        assert await crash, "the sidecar was killed while files were in flight"
        assert len(bank.files) == 5  # one file per chunk, whatever the crash interrupted
        assert set(bank.ledger) <= set(sent)
        succeeded_total = Decimal(0)
        for end_to_end_id, p in sent.items():
            entry = bank.ledger.get(end_to_end_id)
            if p.payee_fa.startswith("mobile:"):
                assert entry is None and p.status == res_pb.PAYMENT_STATUS_FAILED
                assert p.reason_code == "rjct.payee_fa.invalid"
                continue
            assert entry is not None, f"{p.reference_id} never reached the bank"
            assert (
                entry.instruction.amount == Decimal(p.amount)
                and entry.instruction.currency == p.currency_code
            )
            if entry.status == "ACSC":
                assert p.status == res_pb.PAYMENT_STATUS_SUCCEEDED, p.reference_id
                assert p.rail_reference == entry.reference
                succeeded_total += Decimal(p.amount)
            else:
                assert p.status == res_pb.PAYMENT_STATUS_FAILED, p.reference_id
                expected = {"AC04": "rjct.payee_fa.invalid", "AM04": "rjct.payer.insufficient_funds"}[
                    entry.reason
                ]
                assert p.reason_code == expected and entry.reason in p.reason_message
        paid = bank.paid()
        assert succeeded_total == sum((e.instruction.amount for e in paid.values()), Decimal(0))
        assert len(paid) == sum(p.status == res_pb.PAYMENT_STATUS_SUCCEEDED for p in gpo.values())
        assert 0 < len(bank.rejected()) < count // 10
        # Conformance, a second opinion: every file the bank received, checked with xmlschema.
        schema = xmlschema.XMLSchema(str(xsd_path))
        archived = sorted(bank.archive.iterdir())
        assert len(archived) == len(bank.files) >= 5
        for path in archived:
            schema.validate(str(path))

        # A paid transfer returned by the payee's bank ends REVERSED, with the reason.
        returned = [p for p in gpo.values() if p.status == res_pb.PAYMENT_STATUS_SUCCEEDED][:2]
        bank.return_payment(pain001.end_to_end_id(returned[0].idempotency_key), "AC04", via="camt.054")
        bank.return_payment(pain001.end_to_end_id(returned[1].idempotency_key), "MD07", via="pain.002")
        reversed_ = await _wait_reversed(client, name, {p.name for p in returned}, cluster, deadline_s=30)
        assert len(reversed_) == 2
        for p, reason in zip(returned, ("AC04", "MD07"), strict=True):
            after = reversed_[p.name]
            assert after.reason_code == "rjct.payee_fa.invalid" and reason in after.reason_message
    finally:
        if client is not None:
            await client.close()
        await asyncio.to_thread(cluster.stop)
        await bank.stop()
        await _delete_queues(amqp_url, rail)


async def _kill_sidecar_mid_run(cluster: Cluster, rail: str, config: Path, bank: Bank) -> bool:
    """kill -9 the sidecar once the bank has two files (three chunks still to go), then start another."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while len(bank.files) < 2:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    await asyncio.to_thread(cluster.sidecars[rail].kill9)
    cluster.start_sidecar(rail, "--config", str(config))
    return True


async def _wait_completed(client: Any, name: str, cluster: Cluster, deadline_s: float) -> Any:
    from gpo.v1 import resources_pb2 as res_pb

    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        batch = await client.get_batch(name)
        if batch.state == res_pb.BATCH_STATE_COMPLETED or loop.time() > deadline:
            if batch.state != res_pb.BATCH_STATE_COMPLETED:
                _dump(cluster)
            return batch
        await asyncio.sleep(0.5)


async def _wait_reversed(
    client: Any, batch: str, names: set[str], cluster: Cluster, deadline_s: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        found = {p.name: p async for p in client.payments(batch, filter="status = REVERSED")}
        if names <= set(found):
            return found
        if loop.time() > deadline:
            _dump(cluster)
            raise AssertionError(f"not REVERSED: {sorted(names - set(found))}")
        await asyncio.sleep(0.5)


def _dump(cluster: Cluster) -> None:
    procs = [*([cluster.orchestrator] if cluster.orchestrator else []), *cluster.sidecars.values()]
    for proc in procs:
        print(f"--- {proc.name} ---\n{proc.tail()}")
