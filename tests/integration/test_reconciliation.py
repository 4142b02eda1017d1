"""Statement reconciliation on PostgreSQL and RabbitMQ (issue 17, item 5): a batch paid on the simulator,
then a bank's camt.053 and MT940 statements, built here as a bank would (lxml, checked against the official
camt.053.001.08 XSD; never GPO's code), matched to its payments: single and batch-booked debits, returns
that reverse payments, an entry no payment explains, and paid payments no statement shows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from gpo.v1 import resources_pb2 as res_pb
from lxml import etree

from gpo_server.client import GpoClient, chunked
from tests.conftest import running_gpo
from tests.integration.test_api import all_payments, deadline, expect_error, header, new_program, watch_to_end
from tests.integration.test_cli import cli
from tests.support.processes import SPECS_DIR

XSD = SPECS_DIR / "iso20022" / "camt.053.001.08.xsd"
NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
IBAN = "NL91ABNA0417164300"
TODAY = dt.date.today().isoformat()
SUCCEEDED = res_pb.PAYMENT_STATUS_SUCCEEDED
REVERSED = res_pb.PAYMENT_STATUS_REVERSED
FAILED = res_pb.PAYMENT_STATUS_FAILED


# ---- the bank: statements as it would write them ---------------------------------------------------


def e2e(p: res_pb.Payment) -> str:
    """The EndToEndId an ISO 20022 payer puts in pain.001 for a UUID key: its 32 hex digits."""
    return p.idempotency_key.replace("-", "")


def _sub(parent: etree._Element, name: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NS}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def camt053(statement_id: str, entries: Sequence[dict[str, object]]) -> bytes:
    """A camt.053.001.08 statement; each entry: amount, credit, ref, e2e (list), batch (PmtInfId),
    return_code."""
    root = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    body = _sub(root, "BkToCstmrStmt")
    group = _sub(body, "GrpHdr")
    _sub(group, "MsgId", f"MSG-{statement_id}")
    _sub(group, "CreDtTm", f"{TODAY}T18:00:00")
    stmt = _sub(body, "Stmt")
    _sub(stmt, "Id", statement_id)
    _sub(stmt, "CreDtTm", f"{TODAY}T18:00:00")
    _sub(_sub(_sub(stmt, "Acct"), "Id"), "IBAN", IBAN)
    balance = _sub(stmt, "Bal")
    _sub(_sub(_sub(balance, "Tp"), "CdOrPrtry"), "Cd", "CLBD")
    _sub(balance, "Amt", "1000000.00", Ccy="EUR")
    _sub(balance, "CdtDbtInd", "CRDT")
    _sub(_sub(balance, "Dt"), "Dt", TODAY)
    for entry in entries:
        credit = bool(entry.get("credit"))
        ntry = _sub(stmt, "Ntry")
        _sub(ntry, "Amt", str(entry["amount"]), Ccy="EUR")
        _sub(ntry, "CdtDbtInd", "CRDT" if credit else "DBIT")
        _sub(_sub(ntry, "Sts"), "Cd", "BOOK")
        _sub(_sub(ntry, "BookgDt"), "Dt", TODAY)
        _sub(ntry, "AcctSvcrRef", str(entry["ref"]))
        domain = _sub(_sub(ntry, "BkTxCd"), "Domn")
        _sub(domain, "Cd", "PMNT")
        family = _sub(domain, "Fmly")
        _sub(family, "Cd", "ICDT")
        _sub(family, "SubFmlyCd", "RRTN" if entry.get("return_code") else "ESCT")
        details = _sub(ntry, "NtryDtls")
        ids = list(entry.get("e2e") or [])  # type: ignore[call-overload]
        if entry.get("batch"):
            batch = _sub(details, "Btch")
            _sub(batch, "PmtInfId", str(entry["batch"]))
            _sub(batch, "NbOfTxs", str(len(ids)))
        for one in ids:
            tx = _sub(details, "TxDtls")
            _sub(_sub(tx, "Refs"), "EndToEndId", one)
            if entry.get("return_code"):
                why = _sub(tx, "RtrInf")
                _sub(_sub(why, "Rsn"), "Cd", str(entry["return_code"]))
                _sub(why, "AddtlInf", "account closed")
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    schema.assertValid(root)  # the bank's file is valid before GPO sees it
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def mt940(reference: str, lines: Sequence[tuple[str, str, str]]) -> bytes:
    """An MT940 statement; each line: (mark D/C/RD, amount with a comma, :86: text)."""
    day = dt.date.today().strftime("%y%m%d")
    out = [f":20:{reference}", f":25:{IBAN}", ":28C:00001/1", f":60F:C{day}EUR1000000,00"]
    for n, (mark, amount, info) in enumerate(lines, 1):
        kind = "NRTI" if mark == "RD" else "NTRF"
        out += [f":61:{day}{day[2:]}{mark}{amount}{kind}NONREF//MT{reference[-6:]}{n:03d}", f":86:{info}"]
    out += [f":62F:C{day}EUR1000000,00", "-"]
    return "\r\n".join(out).encode()


def total_of(ps: Iterable[res_pb.Payment]) -> Decimal:
    return sum((Decimal(p.amount) for p in ps), Decimal(0))


def amount_text(p: res_pb.Payment) -> str:
    return f"{Decimal(p.amount):.2f}"


# ---- the test -------------------------------------------------------------------------------------


async def _paid_batch(
    gpo_client: GpoClient, program: str, count: int, *, first: int = 0, cycle: str = ""
) -> tuple[str, list[res_pb.Payment]]:
    """A batch of `count` EUR payments to beneficiaries first, first + 1, ..., paid on the simulator."""
    from gpo.v1 import disbursement_service_pb2 as api_pb

    items = [
        api_pb.PaymentInput(
            reference_id=f"rec-{i:03d}",
            payee_fa=f"account:NL{i:02d}BANK0{i:09d}@bank-b",
            amount=f"{100 + i * 7}.{i % 100:02d}",
            currency_code="EUR",
            payee_name=f"Beneficiary {i}",
        )
        for i in range(first, first + count)
    ]
    total = sum(Decimal(p.amount) for p in items)
    declared = header(
        program, expected_payment_count=count, expected_total_amount=f"{total:.2f}", cycle=cycle
    )
    batch = (await deadline(gpo_client.upload(declared, chunked(items, 10)))).batch
    await watch_to_end(gpo_client, batch.name)
    return batch.name, sorted(await all_payments(gpo_client, batch.name), key=lambda p: p.reference_id)


@pytest.mark.parametrize("backend", ["postgres", "embedded"])
async def test_statements_confirm_payments_reverse_returns_and_list_what_does_not_match(
    backend: str, tmp_path: Path
) -> None:
    async with running_gpo(backend, tmp_path, specs_dir=str(SPECS_DIR)) as gpo:
        program = new_program()
        name, stored = await _paid_batch(gpo.client([program]), program, 24)
        paid = [p for p in stored if p.status == SUCCEEDED]
        assert len(paid) >= 10, "the simulator's seeded failures leave enough paid payments"
        failed = [p for p in stored if p.status != SUCCEEDED]
        assert any(p.status == FAILED for p in failed), "the simulator's seeded failures leave a FAILED one"
        returned_failed = next(p for p in failed if p.status == FAILED)
        reconciler = gpo.client([], ["reconciler"], subject="treasury-desk")
        statement_id = f"STMT-{uuid.uuid4().hex[:12]}"
        batch_ref = f"PMTINF-{uuid.uuid4().hex[:8]}"
        group = paid[2:5]
        camt = camt053(
            statement_id,
            [
                {"amount": amount_text(paid[0]), "ref": "BK-1", "e2e": [e2e(paid[0])]},
                {"amount": amount_text(paid[1]), "ref": "BK-2", "e2e": [e2e(paid[1])]},
                # One booking for three payments (BtchBookg): the batch booking reference and its details.
                {
                    "amount": f"{sum(Decimal(p.amount) for p in group):.2f}",
                    "ref": "BK-3",
                    "batch": batch_ref,
                    "e2e": [e2e(p) for p in group],
                },
                {"amount": amount_text(paid[5]), "ref": "BK-4", "e2e": [e2e(paid[5])]},
                # The payee's bank sent paid[5] back.
                {
                    "amount": amount_text(paid[5]),
                    "ref": "BK-5",
                    "credit": True,
                    "e2e": [e2e(paid[5])],
                    "return_code": "AC04",
                },
                # A debit no payment of the batch explains.
                {"amount": "12.34", "ref": "BK-6", "e2e": ["0" * 32]},
                # A debit for the wrong amount.
                {
                    "amount": f"{Decimal(paid[6].amount) + Decimal('0.01'):.2f}",
                    "ref": "BK-7",
                    "e2e": [e2e(paid[6])],
                },
                # Money in that is no return (the account's funding).
                {"amount": "5000.00", "ref": "BK-8", "credit": True},
            ],
        )

        # A program caller may neither import statements nor read reconciliations.
        program_client = gpo.client([program])
        await expect_error(
            program_client.import_statement(camt), grpc.StatusCode.PERMISSION_DENIED, "RECONCILER_ONLY"
        )
        await expect_error(
            program_client.reconciliation(name), grpc.StatusCode.PERMISSION_DENIED, "RECONCILER_ONLY"
        )

        imported = await deadline(reconciler.import_statement(camt, batches=[name]))
        [statement] = imported.statements
        # The account number is masked in the answer, as in logs and the audit trail.
        assert (statement.statement_id, statement.account, statement.format) == (
            statement_id,
            "***4300",
            "camt.053",
        )
        assert IBAN not in str(imported)
        assert not statement.already_imported and statement.batches == [name]
        assert statement.entry_count == 8 and statement.reversed_count == 1
        assert dict(statement.outcome_counts) == {
            "matched": 4,
            "returned": 1,
            "unmatched": 1,
            "amount_mismatch": 1,
            "other_credit": 1,
        }

        # The same statement again changes nothing.
        again = await deadline(reconciler.import_statement(camt, batches=[name]))
        assert again.statements[0].already_imported and again.statements[0].name == statement.name
        assert again.statements[0].reversed_count == 1

        # MT940 from the same bank: paid[7] paid then returned, paid[8] paid, and a return of a payment GPO
        # holds as FAILED (its rail said no, yet the bank paid and got it back): an operator must look.
        mt_reference = f"MT{uuid.uuid4().hex[:10]}"
        text = mt940(
            mt_reference,
            [
                ("D", amount_text(paid[7]).replace(".", ","), f"/EREF/{e2e(paid[7])}/REMI/benefit"),
                ("RD", amount_text(paid[7]).replace(".", ","), f"/EREF/{e2e(paid[7])}/RTRN/MD07/"),
                ("D", amount_text(paid[8]).replace(".", ","), f"/EREF/{e2e(paid[8])}/"),
                (
                    "RD",
                    amount_text(returned_failed).replace(".", ","),
                    f"/EREF/{e2e(returned_failed)}/RTRN/AC04/",
                ),
            ],
        )
        [swift] = (await deadline(reconciler.import_statement(text, batches=[name]))).statements
        assert swift.format == "mt940" and swift.reversed_count == 1
        assert dict(swift.outcome_counts) == {"matched": 2, "returned": 1, "return_not_succeeded": 1}

        after = {p.reference_id: p for p in await all_payments(gpo.client([program]), name)}
        for p in (paid[5], paid[7]):
            assert after[p.reference_id].status == REVERSED
            assert after[p.reference_id].reason_code == "rjct.payment.returned"
        assert "AC04" in after[paid[5].reference_id].reason_message
        assert [p.reference_id for p in after.values() if p.status == REVERSED] == sorted(
            [paid[5].reference_id, paid[7].reference_id]
        )
        # The FAILED payment keeps its status and is flagged for an operator, saying why.
        flagged = after[returned_failed.reference_id]
        assert flagged.status == FAILED and flagged.reason_code == returned_failed.reason_code
        assert flagged.attention_reason.startswith(
            f"returned on bank statement {swift.statement_id} (entry 4"
        )
        assert "while failed in GPO" in flagged.attention_reason and "AC04" in flagged.attention_reason
        assert [p.reference_id for p in after.values() if p.attention_reason] == [
            returned_failed.reference_id
        ]
        changes = [
            c
            async for c in reconciler_history(
                gpo.client([program]), f"{name}/payments/{paid[5].reference_id}"
            )
        ]
        assert changes[-1].cause == "reversal" and changes[-1].status == REVERSED

        view = await deadline(reconciler.reconciliation(name))
        confirmed = {paid[i].reference_id for i in (0, 1, 2, 3, 4, 5, 7, 8)}
        assert {
            m.payment.rsplit("/", 1)[1] for m in view.matched if m.outcome in ("matched", "returned")
        } == confirmed
        assert {m.outcome for m in view.matched if m.payment.endswith(paid[5].reference_id)} == {
            "matched",
            "returned",
        }
        batch_rows = [
            m for m in view.matched if m.payment.rsplit("/", 1)[1] in {p.reference_id for p in group}
        ]
        assert {m.entry_number for m in batch_rows} == {3}
        unmatched = sorted((e.outcome, e.account_servicer_reference) for e in view.unmatched_entries)
        assert unmatched == [
            ("amount_mismatch", "BK-7"),
            ("return_not_succeeded", f"MT{mt_reference[-6:]}004"),
            ("unmatched", "BK-6"),
        ]
        [needs_action] = [e for e in view.unmatched_entries if e.outcome == "return_not_succeeded"]
        assert needs_action.returned and "flagged for attention" in needs_action.note
        assert [m.payment for m in view.matched if m.outcome == "return_not_succeeded"] == [
            returned_failed.name
        ]
        missing = {p.reference_id for p in paid} - confirmed
        assert {u.payment.rsplit("/", 1)[1] for u in view.unconfirmed_payments} == missing
        assert view.unconfirmed_count == len(missing) and paid[6].reference_id in missing
        assert not {u.payment.rsplit("/", 1)[1] for u in view.unconfirmed_payments} & {
            p.reference_id for p in failed
        }
        [eur] = view.totals
        assert (eur.currency_code, eur.paid_count, Decimal(eur.paid_amount)) == (
            "EUR",
            len(paid),
            total_of(paid),
        )
        confirmed_payments = [p for p in paid if p.reference_id in confirmed]
        assert (eur.confirmed_count, Decimal(eur.confirmed_amount)) == (
            len(confirmed),
            total_of(confirmed_payments),
        )
        assert (eur.reversed_count, Decimal(eur.reversed_amount)) == (2, total_of([paid[5], paid[7]]))
        assert (view.declared_count, Decimal(view.declared_total_amount)) == (len(stored), total_of(stored))

        # Every import is in the audit trail, with its caller.
        operator = gpo.client([], ["operator"])
        events = [e async for e in operator.audit_events() if e.action == "statement.import"]
        mine = [e for e in events if statement_id in e.detail_json or swift.statement_id in e.detail_json]
        assert len(mine) == 2 and {e.subject for e in mine} == {"treasury-desk"}
        assert {e.caller_kind for e in mine} == {"reconciler"}
        assert IBAN not in "".join(e.detail_json for e in mine)
        assert (await operator.verify_audit()).intact

        # A reconciler reads no batch beyond its reconciliation.
        await expect_error(reconciler.get_batch(name), grpc.StatusCode.NOT_FOUND)

        # The CLI: the MT940 file again (already imported), then the batch's CSV report.
        env = {"GPO_SERVER": gpo.target, "GPO_TOKEN": gpo.token([], ["reconciler"])}
        (tmp_path / "day.sta").write_bytes(text)
        run = await cli(None, "reconcile", str(tmp_path / "day.sta"), "--batch", name, tmp=tmp_path, env=env)
        assert run.code == 0, run.err
        [record] = run.records
        assert record["already_imported"] is True and record["statement_id"] == swift.statement_id
        run = await cli(None, "reconciliation", name, "--csv", "-", tmp=tmp_path, env=env)
        assert run.code == 0, run.err
        [row] = list(csv.DictReader(io.StringIO(run.out)))
        assert row["batch"] == name and row["currency_code"] == "EUR"
        assert (row["declared_count"], Decimal(row["declared_total_amount"])) == (
            str(len(stored)),
            total_of(stored),
        )
        assert (row["paid_count"], Decimal(row["paid_amount"])) == (str(len(paid)), total_of(paid))
        assert (row["confirmed_count"], row["reversed_count"]) == (str(len(confirmed)), "2")
        assert (row["unconfirmed_count"], row["unmatched_entries"]) == (str(len(missing)), "3")


async def test_a_cycles_reconciliation_sums_its_batches_and_its_csv_states_them(tmp_path: Path) -> None:
    """A cycle of two batches, one camt.053 statement booking payments of both, returning one and holding a
    debit nobody explains: GetCycleReconciliation (and `gpo reconciliation CYCLE --csv`) states declared,
    paid, confirmed and reversed over both batches."""
    async with running_gpo("postgres", tmp_path, specs_dir=str(SPECS_DIR)) as gpo:
        program = new_program()
        operator = gpo.client([], ["operator"])
        cycle = (await deadline(operator.create_cycle(program, "2026-12", {"EUR": "100000.00"}))).name
        caller = gpo.client([program])
        first, first_stored = await _paid_batch(caller, program, 12, cycle="2026-12")
        second, second_stored = await _paid_batch(caller, program, 12, first=50, cycle="2026-12")
        # A batch of the program's other cycle counts for none of this one.
        await deadline(operator.create_cycle(program, "2027-01", {"EUR": "100000.00"}))
        await _paid_batch(caller, program, 3, first=80, cycle="2027-01")
        stored = first_stored + second_stored
        paid = [p for p in stored if p.status == SUCCEEDED]
        one = [p for p in first_stored if p.status == SUCCEEDED]
        two = [p for p in second_stored if p.status == SUCCEEDED]
        assert len(one) >= 4 and len(two) >= 4, "the simulator's seeded failures leave enough paid payments"
        booked = [one[0], one[1], two[0], two[1], two[2]]
        debits: list[dict[str, object]] = [
            {"amount": amount_text(p), "ref": f"CY-{n}", "e2e": [e2e(p)]} for n, p in enumerate(booked)
        ]
        camt = camt053(
            f"STMT-{uuid.uuid4().hex[:12]}",
            [
                *debits,
                # two[2] came back.
                {
                    "amount": amount_text(two[2]),
                    "ref": "CY-R",
                    "credit": True,
                    "e2e": [e2e(two[2])],
                    "return_code": "AC04",
                },
                {"amount": "7.77", "ref": "CY-X", "e2e": ["f" * 32]},
            ],
        )
        reconciler = gpo.client([], ["reconciler"])
        [statement] = (await deadline(reconciler.import_statement(camt, batches=[first, second]))).statements
        assert dict(statement.outcome_counts) == {"matched": 5, "returned": 1, "unmatched": 1}

        # A program caller reads no reconciliation; an unknown cycle or a malformed name is refused.
        await expect_error(
            caller.cycle_reconciliation(cycle), grpc.StatusCode.PERMISSION_DENIED, "RECONCILER_ONLY"
        )
        await expect_error(
            reconciler.cycle_reconciliation(f"programs/{program}/cycles/2099-01"), grpc.StatusCode.NOT_FOUND
        )
        await expect_error(
            reconciler.cycle_reconciliation(f"programs/{program}/cycles/"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_NAME",
        )

        view = await deadline(reconciler.cycle_reconciliation(cycle))
        assert view.name == f"{cycle}/reconciliation" and view.batch_count == 2
        assert (view.declared_count, Decimal(view.declared_total_amount)) == (len(stored), total_of(stored))
        [eur] = view.totals
        assert (eur.currency_code, eur.paid_count, Decimal(eur.paid_amount)) == (
            "EUR",
            len(paid),
            total_of(paid),
        )
        assert (eur.confirmed_count, Decimal(eur.confirmed_amount)) == (len(booked), total_of(booked))
        assert (eur.reversed_count, Decimal(eur.reversed_amount)) == (1, total_of([two[2]]))
        missing = {p.name for p in paid} - {p.name for p in booked}
        assert {u.payment for u in view.unconfirmed_payments} == missing
        assert view.unconfirmed_count == len(missing)
        assert [(e.outcome, e.account_servicer_reference) for e in view.unmatched_entries] == [
            ("unmatched", "CY-X")
        ]
        # The lists are limited, the count is not.
        limited = await deadline(reconciler.cycle_reconciliation(cycle, 2))
        assert len(limited.unconfirmed_payments) == 2 and limited.unconfirmed_count == len(missing)
        # The cycle's figures are the sums of its batches'.
        views = [await deadline(reconciler.reconciliation(b)) for b in (first, second)]
        assert sum(v.totals[0].confirmed_count for v in views) == eur.confirmed_count
        assert sum(v.unconfirmed_count for v in views) == view.unconfirmed_count

        env = {"GPO_SERVER": gpo.target, "GPO_TOKEN": gpo.token([], ["reconciler"])}
        run = await cli(None, "reconciliation", cycle, "--csv", "-", tmp=tmp_path, env=env)
        assert run.code == 0, run.err
        [row] = list(csv.DictReader(io.StringIO(run.out)))
        assert row["cycle"] == cycle and row["currency_code"] == "EUR"
        assert (row["declared_count"], Decimal(row["declared_total_amount"])) == (
            str(len(stored)),
            total_of(stored),
        )
        assert (row["paid_count"], Decimal(row["paid_amount"])) == (str(len(paid)), total_of(paid))
        assert (row["confirmed_count"], Decimal(row["confirmed_amount"])) == (
            str(len(booked)),
            total_of(booked),
        )
        assert (row["reversed_count"], Decimal(row["reversed_amount"])) == ("1", total_of([two[2]]))
        assert (row["unconfirmed_count"], row["unmatched_entries"]) == (str(len(missing)), "1")
        run = await cli(None, "reconciliation", cycle, tmp=tmp_path, env=env)
        assert run.code == 0, run.err
        [record] = run.records
        assert record["name"] == f"{cycle}/reconciliation" and record["batch_count"] == "2"


async def reconciler_history(client: GpoClient, payment: str) -> AsyncIterator[res_pb.StatusChange]:
    async for change in client.status_changes(payment):
        yield change


async def test_a_malformed_statement_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with running_gpo("postgres", tmp_path, specs_dir=str(SPECS_DIR)) as gpo:
        program = new_program()
        name, _ = await _paid_batch(gpo.client([program]), program, 3)
        operator = gpo.client([], ["operator"])
        good = camt053(f"STMT-{uuid.uuid4().hex[:12]}", [{"amount": "1.00", "ref": "X", "e2e": ["1" * 32]}])
        broken = good.replace(b"<CdtDbtInd>DBIT</CdtDbtInd>", b"<CdtDbtInd>DEBIT</CdtDbtInd>")
        _, violations = await expect_error(
            operator.import_statement(broken, batches=[name]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_STATEMENT",
        )
        assert "schema" in violations[0].description
        await expect_error(
            operator.import_statement(b":20:X\r\n:25:\r\n-", batches=[name]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_STATEMENT",
        )
        view = await deadline(operator.reconciliation(name))
        assert not view.matched and not view.unmatched_entries
        # The valid one, imported after the refusals, is new: nothing of the broken copy was kept.
        [statement] = (await deadline(operator.import_statement(good, batches=[name]))).statements
        assert not statement.already_imported and dict(statement.outcome_counts) == {"unmatched": 1}


@pytest.fixture(autouse=True)
def _needs_schema() -> None:
    assert XSD.is_file(), f"the camt.053 schema must be at {XSD} (set GPO_SPECS_DIR)"
