"""Program cycles (issue 17, items 1 and 2): budgets per currency checked when an upload ends (and a declared
total when it opens), windows, a cycle required once a program has one, one payment per beneficiary per
cycle, freed by a payment that FAILED or was CANCELLED, and the cycle's totals as its batches pay. The races
(two batches ending at once over one budget; one beneficiary uploaded in two batches at once) run on
PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import OPERATOR_ROLE
from gpo_server.client import GpoClient, UploadResult, error_reason
from tests.conftest import Gpo, running_gpo
from tests.integration.test_api import (
    _in_one_hour,
    all_payments,
    deadline,
    expect_error,
    header,
    new_program,
    watch_to_end,
)
from tests.integration.test_cli import cli

P = res_pb
DUPLICATE = "rjct.beneficiary.duplicate"


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Gpo]:
    async with running_gpo("postgres", tmp_path) as gpo:
        yield gpo


def pay(ref: str, fa: str, amount: str = "100.00", currency: str = "KES") -> api_pb.PaymentInput:
    return api_pb.PaymentInput(
        reference_id=ref, payee_fa=fa, amount=amount, currency_code=currency, payee_name="Beneficiary"
    )


def fa(i: int) -> str:
    return f"mobile:2547{i:08d}@mpesa"


def cycle_header(program: str, cycle: str, **fields: Any) -> api_pb.BatchHeader:
    return header(program, cycle=cycle, **fields)


def totals_by_currency(cycle: res_pb.Cycle) -> dict[str, res_pb.CycleTotal]:
    return {t.currency_code: t for t in cycle.totals}


async def _setup(gpo: Gpo, budgets: dict[str, str], **options: Any) -> tuple[str, str, GpoClient, GpoClient]:
    program = new_program()
    operator = gpo.client([], [OPERATOR_ROLE])
    cycle = await deadline(operator.create_cycle(program, "2026-12", budgets, **options))
    assert cycle.name == f"programs/{program}/cycles/2026-12"
    return program, cycle.name, gpo.client([program]), operator


async def test_a_batch_over_its_cycles_budget_is_refused_before_anything_is_paid(gpo: Gpo) -> None:
    program, name, client, operator = await _setup(gpo, {"KES": "1000.00"})
    first = await deadline(
        client.upload(
            cycle_header(program, "2026-12", schedule_time=_in_one_hour()),
            [[pay(f"a{i}", fa(i), "150.00") for i in range(4)]],  # 600.00
        )
    )
    assert first.batch.state == P.BATCH_STATE_PROCESSING and first.batch.cycle == "2026-12"

    # 600 committed; 500 more passes the 1000 budget: refused at the end of the upload, with the figures.
    over = cycle_header(program, "2026-12", schedule_time=_in_one_hour())
    info, _ = await expect_error(
        client.upload(over, [[pay(f"b{i}", fa(100 + i), "100.00") for i in range(5)]]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CYCLE_BUDGET_EXCEEDED",
    )
    assert info.metadata["cycle"] == name
    assert (info.metadata["currency_code"], info.metadata["budget"]) == ("KES", "1000.00")
    assert (info.metadata["committed"], info.metadata["requested"]) == ("600.00", "500.00")
    refused = await client.get_batch(info.metadata["batch"])
    # Held in its upload: nothing of it is sent, and it commits nothing.
    assert refused.state == P.BATCH_STATE_UPLOADING
    assert {(t.status, t.count) for t in refused.totals} == {(P.PAYMENT_STATUS_ACCEPTED, 5)}
    cycle = await operator.get_cycle(name)
    kes = totals_by_currency(cycle)["KES"]
    assert (kes.budget_amount, kes.committed_amount) == ("1000.00", "600.00")
    assert (kes.accepted_count, kes.accepted_amount) == (9, "1100.00")  # the held batch's too
    assert cycle.batch_count == 2

    # A currency the cycle has no budget for is refused likewise; one that fits passes.
    await expect_error(
        client.upload(cycle_header(program, "2026-12"), [[pay("u1", fa(200), "1.00", "USD")]]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CYCLE_BUDGET_EXCEEDED",
    )
    fits = await deadline(
        client.upload(
            cycle_header(program, "2026-12", schedule_time=_in_one_hour()),
            [[pay("c1", fa(300), "400.00")]],
        )
    )
    assert fits.batch.state == P.BATCH_STATE_PROCESSING
    # The held batch finishes once an operator raises the budget and its request_id is sent again.
    await expect_error(client.upload(over, []), grpc.StatusCode.FAILED_PRECONDITION, "CYCLE_BUDGET_EXCEEDED")
    raised = await operator.update_cycle(name, {"KES": "1500.00"})
    assert [(b.currency_code, b.amount) for b in raised.budgets] == [("KES", "1500.00")]
    resumed = await deadline(client.upload(over, []))
    assert resumed.batch.name == refused.name and resumed.batch.state != P.BATCH_STATE_UPLOADING
    assert totals_by_currency(await operator.get_cycle(name))["KES"].committed_amount == "1500.00"
    await expect_error(
        client.update_cycle(name, {"KES": "1.00"}), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY"
    )
    # The held USD batch, cancelled, is final and pays nothing.
    (usd,) = [b async for b in client.batches(program, "state = UPLOADING")]
    cancelled = await client.cancel(usd.name)
    assert cancelled.state == P.BATCH_STATE_CANCELLED


async def test_a_declared_total_larger_than_the_cycle_has_left_is_refused_at_the_header(gpo: Gpo) -> None:
    program, _name, client, _ = await _setup(gpo, {"KES": "1000.00"})
    declared = cycle_header(program, "2026-12", expected_payment_count=2, expected_total_amount="1000.01")
    info, _ = await expect_error(
        client.upload(declared, [[pay("a", fa(1)), pay("b", fa(2))]]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CYCLE_BUDGET_EXCEEDED",
    )
    assert (info.metadata["left"], info.metadata["requested"]) == ("1000.00", "1000.01")
    assert [b async for b in client.batches(program)] == []  # no batch was created


async def test_a_program_with_cycles_needs_one_named_existing_and_open(gpo: Gpo) -> None:
    now = dt.datetime.now(dt.UTC)
    program, _, client, operator = await _setup(gpo, {})
    await expect_error(
        client.upload(header(program), [[pay("a", fa(1))]]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CYCLE_REQUIRED",
    )
    await expect_error(
        client.upload(cycle_header(program, "2027-01"), [[pay("a", fa(1))]]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CYCLE_NOT_FOUND",
    )
    await operator.create_cycle(program, "2026-11", {}, start_time=now - dt.timedelta(days=30), end_time=now)
    await operator.create_cycle(program, "2027-02", {}, start_time=now + dt.timedelta(days=30))
    for closed in ("2026-11", "2027-02"):
        await expect_error(
            client.upload(cycle_header(program, closed), [[pay("a", fa(1))]]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CYCLE_CLOSED",
        )
    await expect_error(
        client.upload(cycle_header(program, "bad/id"), [[pay("a", fa(1))]]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_HEADER",
    )
    # A program without cycles works as before.
    other = new_program()
    done = await deadline(gpo.client([other]).upload(header(other), [[pay("a", fa(1))]]))
    assert done.batch.state != P.BATCH_STATE_UPLOADING and done.batch.cycle == ""


async def test_cycles_are_created_by_operators_and_read_by_their_programs(gpo: Gpo) -> None:
    program, name, client, operator = await _setup(gpo, {"KES": "10.00", "USD": "5.50"})
    await expect_error(
        client.create_cycle(program, "2027-01", {"KES": "1.00"}),
        grpc.StatusCode.PERMISSION_DENIED,
        "OPERATOR_ONLY",
    )
    await expect_error(
        operator.create_cycle(program, "2026-12", {}), grpc.StatusCode.ALREADY_EXISTS, "CYCLE_EXISTS"
    )
    _, violations = await expect_error(
        operator.create_cycle(program, "x", {"kes": "1.00", "USD": "1.234"}),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CYCLE",
    )
    assert {v.field for v in violations} == {"cycle.budgets[0].currency_code", "cycle.budgets[1].amount"}
    cycle = await client.get_cycle(name)
    assert [(b.currency_code, b.amount) for b in cycle.budgets] == [("KES", "10.00"), ("USD", "5.50")]
    assert not cycle.allow_repeat_payments
    assert [c.name async for c in client.cycles(program)] == [name]
    outsider = gpo.client([new_program()])
    await expect_error(outsider.get_cycle(name), grpc.StatusCode.NOT_FOUND, "CYCLE_NOT_FOUND")
    assert [c.name async for c in outsider.cycles()] == []
    assert name in [c.name async for c in operator.cycles()]
    assert [e.action async for e in operator.audit_events() if e.action == "cycle.create"]


async def test_one_payment_per_beneficiary_per_cycle_freed_by_failure_and_cancel(gpo: Gpo) -> None:
    program, _name, client, operator = await _setup(gpo, {})
    # The same beneficiary twice in one batch: the second is rejected, the rest carries on.
    first = await deadline(
        client.upload(
            cycle_header(program, "2026-12"),
            [[pay(f"a{i}", fa(i), "10.00") for i in range(40)] + [pay("again", fa(3), "10.00")]],
        )
    )
    assert [(r.reference_id, r.reason_code) for r in first.rejections] == [("again", DUPLICATE)]
    done = await watch_to_end(client, first.batch.name)
    paid = await all_payments(client, done.name)
    failed = [p for p in paid if p.status == P.PAYMENT_STATUS_FAILED]
    succeeded = [p for p in paid if p.status == P.PAYMENT_STATUS_SUCCEEDED]
    assert failed and succeeded  # the simulator fails about a fifth, deterministically

    # A later batch: the paid beneficiaries are refused, the failed ones are free again.
    later = [pay(f"r-{p.reference_id}", p.payee_fa, "10.00") for p in failed + succeeded[:3]]
    second = await deadline(
        client.upload(cycle_header(program, "2026-12", schedule_time=_in_one_hour()), [later])
    )
    assert sorted(r.reference_id for r in second.rejections) == sorted(
        f"r-{p.reference_id}" for p in succeeded[:3]
    )
    assert {r.reason_code for r in second.rejections} == {DUPLICATE}

    # The first batch's failed payments are not sent again: a later batch pays their beneficiaries.
    retried = await operator.retry_failed(done.name, str(uuid.uuid4()))
    assert {(t.status, t.count) for t in retried.totals if t.status == P.PAYMENT_STATUS_FAILED} == {
        (P.PAYMENT_STATUS_FAILED, len(failed))
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await operator.retry_payment(failed[0].name, str(uuid.uuid4()))
    assert error_reason(caught.value) == "BENEFICIARY_DUPLICATE"

    # Cancelling the second batch frees its beneficiaries for a third.
    await client.cancel(second.batch.name)
    third = await deadline(
        client.upload(
            cycle_header(program, "2026-12", schedule_time=_in_one_hour()), [[pay("t", failed[0].payee_fa)]]
        )
    )
    assert list(third.rejections) == []


async def test_a_cycle_may_allow_several_payments_per_beneficiary(gpo: Gpo) -> None:
    program, _, client, _ = await _setup(gpo, {}, allow_repeat_payments=True)
    for _ in range(2):
        uploaded = await deadline(
            client.upload(cycle_header(program, "2026-12"), [[pay("a", fa(1)), pay("b", fa(1))]])
        )
        assert list(uploaded.rejections) == []


async def test_cycle_totals_follow_the_batches_as_they_pay(gpo: Gpo) -> None:
    program, name, client, operator = await _setup(gpo, {"KES": "100000.00", "USD": "100000.00"})
    scheduled = await deadline(
        client.upload(
            cycle_header(program, "2026-12", schedule_time=_in_one_hour()),
            [[pay(f"s{i}", fa(i), "2.50") for i in range(4)]],
        )
    )
    cycle = await operator.get_cycle(name)
    kes = totals_by_currency(cycle)["KES"]
    assert (kes.accepted_count, kes.accepted_amount, kes.committed_amount) == (4, "10.00", "10.00")
    assert (kes.paid_count, kes.failed_count) == (0, 0)

    inputs = [pay(f"p{i}", fa(100 + i), f"{i + 1}.00", "USD" if i % 4 == 0 else "KES") for i in range(60)]
    uploaded = await deadline(
        client.upload(
            cycle_header(program, "2026-12", expected_payment_count=60, expected_total_amount="1830.00"),
            [inputs[:30], inputs[30:]],
        )
    )
    done = await watch_to_end(client, uploaded.batch.name)
    by_status: dict[tuple[int, str], tuple[int, Decimal]] = {}
    for t in done.totals:
        by_status[(t.status, t.currency_code)] = (t.count, Decimal(t.amount))
    cycle = await operator.get_cycle(name)
    assert (cycle.batch_count, cycle.declared_payment_count, cycle.declared_total_amount) == (
        2,
        60,
        "1830.00",
    )
    for currency, total in totals_by_currency(cycle).items():
        paid = by_status.get((P.PAYMENT_STATUS_SUCCEEDED, currency), (0, Decimal(0)))
        failed = by_status.get((P.PAYMENT_STATUS_FAILED, currency), (0, Decimal(0)))
        held = Decimal("10.00") if currency == "KES" else Decimal(0)
        assert (total.paid_count, Decimal(total.paid_amount)) == paid
        assert (total.failed_count, Decimal(total.failed_amount)) == failed
        # Committed: paid, plus the scheduled batch still on its way; failures gave theirs back.
        assert Decimal(total.committed_amount) == paid[1] + held
    # Cancelling the scheduled batch gives its amount back.
    await client.cancel(scheduled.batch.name)
    kes = totals_by_currency(await operator.get_cycle(name))["KES"]
    assert (kes.cancelled_count, kes.cancelled_amount) == (4, "10.00")
    assert Decimal(kes.committed_amount) == by_status.get((P.PAYMENT_STATUS_SUCCEEDED, "KES"), (0, 0))[1]


async def test_the_console_shows_each_cycles_budget_and_totals(tmp_path: Path) -> None:
    async with running_gpo("embedded", tmp_path, console_port=0) as gpo:
        program, name, client, _ = await _setup(gpo, {"KES": "500.00"})
        await deadline(
            client.upload(
                cycle_header(program, "2026-12", schedule_time=_in_one_hour()),
                [[pay("a", fa(1), "120.00"), pay("b", fa(1), "5.00")]],
            )
        )
        cookies = {"gpo_console": gpo.token([], [OPERATOR_ROLE])}
        base = f"http://127.0.0.1:{gpo.orchestrator.console_port}"
        async with httpx.AsyncClient(base_url=base, cookies=cookies) as http:
            page = await http.get("/cycles", params={"program": program})
        assert page.status_code == 200, page.text
        assert f'data-cycle="{name}" data-currency="KES"' in page.text
        for shown in ("2026-12", program, "500.00", "120.00", "1 · 120.00"):
            assert shown in page.text, shown


# ---- races, on PostgreSQL and RabbitMQ ----------------------------------------------------------------


async def _outcome(upload: Any) -> UploadResult | str:
    try:
        result: UploadResult = await deadline(upload)
        return result
    except grpc.aio.AioRpcError as error:
        return error_reason(error)


async def test_two_batches_ending_at_once_cannot_both_pass_one_budget(pg: Gpo) -> None:
    for _ in range(3):
        program, name, client, operator = await _setup(pg, {"KES": "1000.00"})
        other = pg.client([program])
        later = _in_one_hour()  # nothing is paid meanwhile, so nothing gives budget back
        uploads = [
            c.upload(
                cycle_header(program, "2026-12", schedule_time=later),
                [[pay(f"{tag}{i}", fa(i + (100 if tag == "b" else 0)), "100.00") for i in range(6)]],
            )
            for c, tag in ((client, "a"), (other, "b"))
        ]
        outcomes = await asyncio.gather(*(_outcome(u) for u in uploads))
        passed = [o for o in outcomes if isinstance(o, UploadResult)]
        assert len(passed) == 1, outcomes
        assert [o for o in outcomes if isinstance(o, str)] == ["CYCLE_BUDGET_EXCEEDED"]
        kes = totals_by_currency(await operator.get_cycle(name))["KES"]
        assert kes.committed_amount == "600.00"


async def test_one_beneficiary_uploaded_in_two_batches_at_once_is_accepted_once(pg: Gpo) -> None:
    program, name, client, operator = await _setup(pg, {})
    other = pg.client([program])
    later = _in_one_hour()
    shared = [fa(i) for i in range(0, 400, 2)]  # 200 beneficiaries in both batches
    uploads = [
        c.upload(
            cycle_header(program, "2026-12", schedule_time=later),
            [[pay(f"{tag}{i}", f) for i, f in enumerate(shared)] + [pay(f"{tag}-own", fa(1000 + n))]],
        )
        for n, (c, tag) in enumerate(((client, "a"), (other, "b")))
    ]
    results = await asyncio.gather(*(deadline(u) for u in uploads))
    accepted: dict[str, int] = {}
    for result in results:
        assert result.batch.state == P.BATCH_STATE_PROCESSING
        rejected = {r.reference_id for r in result.rejections}
        assert {r.reason_code for r in result.rejections} <= {DUPLICATE}
        for p in await all_payments(client, result.batch.name):
            if p.reference_id not in rejected:
                accepted[p.payee_fa] = accepted.get(p.payee_fa, 0) + 1
    assert all(accepted[f] == 1 for f in shared)
    assert sum(len(r.rejections) for r in results) == len(shared)
    kes = totals_by_currency(await operator.get_cycle(name))["KES"]
    assert (kes.accepted_count, kes.rejected_count) == (len(shared) + 2, len(shared))


async def test_the_cli_creates_changes_and_shows_cycles_and_submits_into_one(
    gpo: Gpo, tmp_path: Path
) -> None:
    program = new_program()
    operator_env = {"GPO_TOKEN": gpo.token([], [OPERATOR_ROLE])}
    created = await cli(
        gpo,
        "cycles",
        "create",
        program,
        "2026-12",
        "--budget",
        "KES=100.00",
        "--end",
        "2099-01-01T00:00:00Z",
        tmp=tmp_path,
        env=operator_env,
    )
    assert created.code == 0, created.err
    (cycle,) = created.records
    assert cycle["name"] == f"programs/{program}/cycles/2026-12"
    assert cycle["budgets"] == [{"currency_code": "KES", "amount": "100.00"}]
    bad = await cli(gpo, "cycles", "create", program, "x", "--budget", "KES", tmp=tmp_path, env=operator_env)
    assert bad.code != 0 and "CUR=AMOUNT" in bad.err

    payments = tmp_path / "p.csv"
    payments.write_text(
        "reference_id,payee_fa,amount,currency_code,payee_name\n"
        "r1,mobile:254700000001@mpesa,60.00,KES,One\n"
        "r2,mobile:254700000002@mpesa,60.00,KES,Two\n"
    )
    submit = [
        "submit",
        str(payments),
        "--program",
        program,
        "--payer-fa",
        "account:treasury@cb",
        "--cycle",
        "2026-12",
    ]
    over = await cli(gpo, *submit, "--quiet", tmp=tmp_path)
    assert over.code != 0 and "CYCLE_BUDGET_EXCEEDED" in over.err, over.err
    changed = await cli(
        gpo, "cycles", "update", program, "2026-12", "--budget", "KES=120.00", tmp=tmp_path, env=operator_env
    )
    assert changed.code == 0, changed.err
    assert changed.records[0]["budgets"] == [{"currency_code": "KES", "amount": "120.00"}]
    assert changed.records[0]["end_time"] == "2099-01-01T00:00:00Z"  # what was not given stays
    again = await cli(gpo, *submit, "--quiet", tmp=tmp_path)
    assert again.code == 0, again.err
    shown = await cli(gpo, "cycles", "get", program, "2026-12", tmp=tmp_path, env=operator_env)
    totals = shown.records[0]["totals"]
    assert isinstance(totals, list) and len(totals) == 1
    assert (totals[0]["accepted_count"], totals[0]["accepted_amount"]) == ("2", "120.00")
    listed = await cli(gpo, "cycles", "list", "--program", program, tmp=tmp_path, env=operator_env)
    assert [c["name"] for c in listed.records] == [cycle["name"]]
