"""The operator API (issue 16, item 3), on both backends: filters on batches and payments, a payment found
by its reference across batches, cancelling and retrying one payment, resolving a payment flagged for
attention, re-driving a dead letter on request, and the server-side CSV report. Each action takes a request
id, is refused to the wrong kind of caller, and is audited."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import GpoClient, chunked
from gpo_server.domain.states import PaymentStatus
from gpo_server.storage.store import NothingToDo, ResultUpdate, Store
from tests.conftest import Gpo
from tests.integration.test_api import (
    _in_one_hour,
    all_payments,
    deadline,
    expect_error,
    header,
    new_program,
    payment,
    payments,
    watch_to_end,
)
from tests.integration.test_operations import _batch_with_payments, _payment, store  # noqa: F401

P = res_pb
FINAL = {P.PAYMENT_STATUS_SUCCEEDED, P.PAYMENT_STATUS_FAILED}


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _sidecar(gpo: Gpo) -> GpoClient:
    return GpoClient(gpo.target, gpo.token_for_rails([gpo.rail]))


async def _audited(operator: GpoClient, batch: str, action: str) -> list[res_pb.AuditEvent]:
    return [e async for e in operator.audit_events(batch) if e.action == action]


async def _scheduled(client: GpoClient, program: str, count: int = 6) -> str:
    """A batch whose payments stay ACCEPTED for an hour: nothing of it is dispatched meanwhile."""
    uploaded = await deadline(
        client.upload(header(program, schedule_time=_in_one_hour()), [payments(1, count)])
    )
    return uploaded.batch.name


async def _dead_letter(gpo: Gpo, batch: str, numbers: list[int], *, max_redrives: int) -> str:
    """Records a dead letter of `batch`'s payments `numbers` as the recorder does (the automatic re-drive
    with `max_redrives`); returns its name."""
    chunk_id = f"poison-{uuid.uuid4().hex[:8]}"
    body = rail_pb2.WorkChunk(
        chunk_id=chunk_id,
        batch=batch,
        items=[rail_pb2.WorkItem(payment_number=n) for n in numbers],
    ).SerializeToString()
    await gpo.orchestrator.store.record_dead_letter(
        gpo.rail,
        chunk_id,
        batch.removeprefix("batches/"),
        numbers,
        "delivery_limit",
        body,
        redrive=gpo.orchestrator.build_work,
        max_redrives=max_redrives,
    )
    operator = gpo.client([], ["operator"])
    found = [d async for d in operator.dead_letters(gpo.rail) if d.chunk_id == chunk_id]
    assert len(found) == 1 and found[0].name.startswith("deadLetters/")
    return found[0].name


# ---- item 1: filters ---------------------------------------------------------------------------------


async def test_batches_filter_by_state_program_and_create_time(gpo: Gpo) -> None:
    mine, other = new_program(), new_program()
    client = gpo.client([mine])
    done = (await deadline(client.upload(header(mine), [payments(1, 3)]))).batch.name
    await watch_to_end(client, done)
    between = dt.datetime.now(dt.UTC)
    held = await _scheduled(client, mine)
    await deadline(gpo.client([other]).upload(header(other), [payments(1, 2)]))
    operator = gpo.client([], ["operator"])

    async def names(who: GpoClient, where: str) -> list[str]:
        return [b.name async for b in who.batches("", where)]

    assert await names(operator, f'program = "{mine}"') == [held, done]
    assert await names(operator, f'program = "{mine}" AND state = COMPLETED') == [done]
    assert await names(operator, f'program = "{mine}" AND state = BATCH_STATE_PROCESSING') == [held]
    assert await names(operator, f'program = "{mine}" AND create_time >= "{_rfc3339(between)}"') == [held]
    assert await names(operator, f'program = "{mine}" AND create_time < "{_rfc3339(between)}"') == [done]
    assert await names(operator, f'program = "{mine}" AND state = COMPLETED OR state = PROCESSING') == [
        held,
        done,
    ]
    # A program caller's filter never reaches past its programs.
    assert await names(client, f'program = "{other}"') == []
    for bad in ("state = DONE", "create_time >= yesterday", "colour = red", "state = COMPLETED AND"):
        _, violations = await expect_error(
            anext(operator.batches("", bad)), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER"
        )
        assert [v.field for v in violations] == ["filter"]


async def test_payments_filter_by_rail_attention_and_time_and_a_reference_is_found_across_batches(
    gpo: Gpo,
) -> None:
    mine, other = new_program(), new_program()
    client, stranger = gpo.client([mine]), gpo.client([other])
    first = await _scheduled(client, mine)
    second = await _scheduled(client, mine)
    theirs = await _scheduled(stranger, other)
    await _dead_letter(gpo, second, [2, 3], max_redrives=0)  # flags 2 and 3 for an operator

    def refs(ps: list[res_pb.Payment]) -> list[str]:
        return [p.reference_id for p in ps]

    assert len(await all_payments(client, second, f'rail = "{gpo.rail}"')) == 6
    assert await all_payments(client, second, 'rail = "no-such-rail"') == []
    assert refs(await all_payments(client, second, "attention = true")) == ["ref-00002", "ref-00003"]
    assert len(await all_payments(client, second, "attention = false AND status = ACCEPTED")) == 4
    later = _rfc3339(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    assert await all_payments(client, second, f'update_time >= "{later}"') == []
    assert len(await all_payments(client, second, f'update_time < "{later}"')) == 6

    # batches/- (AIP-159): the reference in every batch of the caller's programs, newest batch first.
    found = await all_payments(client, "batches/-", 'reference_id = "ref-00004"')
    assert [p.name for p in found] == [f"{second}/payments/ref-00004", f"{first}/payments/ref-00004"]
    assert [p.name for p in await all_payments(stranger, "batches/-", 'reference_id = "ref-00004"')] == [
        f"{theirs}/payments/ref-00004"
    ]
    # Paged one at a time, the same two.
    request = api_pb.ListPaymentsRequest(parent="batches/-", filter='reference_id = "ref-00004"', page_size=1)
    page = await client.stub.ListPayments(request, metadata=client.metadata)
    request.page_token = page.next_page_token
    rest = await client.stub.ListPayments(request, metadata=client.metadata)
    assert [p.name for p in [*page.payments, *rest.payments]] == [p.name for p in found]
    assert rest.next_page_token == ""
    await expect_error(
        anext(client.payments("batches/-", "status = FAILED")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FILTER",
    )


# ---- item 2: one payment ------------------------------------------------------------------------------


async def test_one_payment_not_yet_claimed_is_cancelled_once_and_audited(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program], subject="program-officer")
    operator = gpo.client([], ["operator"])
    held = await _scheduled(client, program, 4)
    request_id = str(uuid.uuid4())
    cancelled = await deadline(client.cancel_payment(f"{held}/payments/ref-00002", request_id))
    assert (
        cancelled.status == P.PAYMENT_STATUS_CANCELLED and cancelled.reason_code == "rjct.payment.cancelled"
    )
    again = await deadline(client.cancel_payment(f"{held}/payments/ref-00002", request_id))
    assert again.status == P.PAYMENT_STATUS_CANCELLED
    statuses = {p.reference_id: p.status for p in await all_payments(client, held)}
    assert statuses == {
        "ref-00001": P.PAYMENT_STATUS_ACCEPTED,
        "ref-00002": P.PAYMENT_STATUS_CANCELLED,
        "ref-00003": P.PAYMENT_STATUS_ACCEPTED,
        "ref-00004": P.PAYMENT_STATUS_ACCEPTED,
    }
    (event,) = await _audited(operator, held, "payment.cancel")
    assert (event.subject, event.caller_kind, event.request_id, event.payment_count) == (
        "program-officer",
        "program",
        request_id,
        1,
    )
    assert '"ref-00002"' in event.detail_json
    history = [c.cause async for c in client.status_changes(f"{held}/payments/ref-00002")]
    assert history == ["upload", "cancel"]

    # Once a rail has it, it finishes there: a final payment is not cancelled.
    done = (await deadline(client.upload(header(program), [payments(1, 3)]))).batch.name
    await watch_to_end(client, done)
    await expect_error(
        client.cancel_payment(f"{done}/payments/ref-00001"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_NOT_CANCELLABLE",
    )
    # Another program's caller does not learn the payment exists; a sidecar may not call at all.
    await expect_error(
        gpo.client([new_program()]).cancel_payment(f"{held}/payments/ref-00001"), grpc.StatusCode.NOT_FOUND
    )
    sidecar = _sidecar(gpo)
    try:
        await expect_error(
            sidecar.cancel_payment(f"{held}/payments/ref-00001"),
            grpc.StatusCode.PERMISSION_DENIED,
            "SIDECAR_NOT_ALLOWED",
        )
    finally:
        await sidecar.close()
    await expect_error(client.cancel_payment(f"{held}/payments/no-such-ref"), grpc.StatusCode.NOT_FOUND)


async def test_an_operator_retries_one_failed_payment_once_per_request_id(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    operator = gpo.client([], ["operator"], subject="duty-operator")
    name = (await deadline(client.upload(header(program), chunked(payments(1, 60), 20)))).batch.name
    await watch_to_end(client, name)
    failed = await all_payments(client, name, "status = FAILED")
    succeeded = await all_payments(client, name, "status = SUCCEEDED")
    assert len(failed) >= 2 and succeeded  # the simulator fails about 20% by key
    target, untouched = failed[0], failed[1:]

    await expect_error(
        client.retry_payment(target.name, str(uuid.uuid4())),
        grpc.StatusCode.PERMISSION_DENIED,
        "OPERATOR_ONLY",
    )
    request_id = str(uuid.uuid4())
    retried = await deadline(operator.retry_payment(target.name, request_id))
    assert retried.retries == 1
    await deadline(operator.retry_payment(target.name, request_id))  # the same request: nothing again
    await watch_to_end(client, name)
    now = {p.reference_id: p for p in await all_payments(client, name)}
    assert now[target.reference_id].retries == 1 and now[target.reference_id].status in FINAL
    assert now[target.reference_id].idempotency_key != target.idempotency_key  # refused for good: a new key
    assert all(now[p.reference_id].status == P.PAYMENT_STATUS_FAILED for p in untouched)
    assert all(now[p.reference_id].retries == 0 for p in untouched)
    (event,) = await _audited(operator, name, "payment.retry")
    assert (event.subject, event.caller_kind, event.request_id, event.payment_count) == (
        "duty-operator",
        "operator",
        request_id,
        1,
    )
    await expect_error(
        operator.retry_payment(succeeded[0].name, str(uuid.uuid4())),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_NOT_RETRYABLE",
    )
    # Only a batch that is paying or done is retried (as RetryFailedPayments): not one still uploading.
    uploading = (
        await deadline(client.upload(header(program, expected_payment_count=9), [payments(1, 2)]))
    ).batch
    await expect_error(
        operator.retry_payment(f"{uploading.name}/payments/ref-00001", str(uuid.uuid4())),
        grpc.StatusCode.FAILED_PRECONDITION,
        "BATCH_NOT_RETRYABLE",
    )


# ---- item 3: dead letters and attention ------------------------------------------------------------------


async def test_an_operator_redrives_a_dead_letter_past_the_automatic_bound(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    operator = gpo.client([], ["operator"])
    held = await _scheduled(client, program, 5)
    before = {p.reference_id: p.idempotency_key for p in await all_payments(client, held)}
    dead = await _dead_letter(gpo, held, [1, 2, 3], max_redrives=0)  # the bound: no automatic re-drive
    flagged = await all_payments(client, held, "attention = true")
    assert [p.reference_id for p in flagged] == ["ref-00001", "ref-00002", "ref-00003"]
    assert all("no longer sent by itself" in p.attention_reason for p in flagged)

    await expect_error(
        client.redrive(dead, str(uuid.uuid4())), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY"
    )
    request_id = str(uuid.uuid4())
    answer = await deadline(operator.redrive(dead, request_id))
    assert answer.redriven_count == 3 and answer.dead_letter.name == dead
    assert (await deadline(operator.redrive(dead, request_id))).redriven_count == 0  # AIP-155
    after = await all_payments(client, held)
    assert {p.reference_id: p.idempotency_key for p in after} == before  # the same keys
    assert [p.attention_reason for p in after] == [""] * 5
    assert [p.status for p in after] == [P.PAYMENT_STATUS_ACCEPTED] * 5
    (event,) = await _audited(operator, held, "deadletter.redrive")
    assert (event.request_id, event.payment_count) == (request_id, 3) and dead in event.detail_json
    await expect_error(operator.redrive("deadLetters/999999999", ""), grpc.StatusCode.NOT_FOUND)
    await expect_error(operator.redrive("batches/x", ""), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")


async def test_an_operator_resolves_an_attention_payment_by_sending_it_again_with_its_key(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    operator = gpo.client([], ["operator"])
    held = await _scheduled(client, program, 3)
    await _dead_letter(gpo, held, [2], max_redrives=0)
    target = f"{held}/payments/ref-00002"
    key = (await all_payments(client, held, 'reference_id = "ref-00002"'))[0].idempotency_key

    await expect_error(
        client.resolve_payment(target, str(uuid.uuid4())), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY"
    )
    await expect_error(
        operator.resolve_payment(f"{held}/payments/ref-00001", str(uuid.uuid4())),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_NOT_FLAGGED",
    )
    request_id = str(uuid.uuid4())
    resolved = await deadline(operator.resolve_payment(target, request_id))
    assert resolved.attention_reason == "" and resolved.idempotency_key == key
    assert resolved.status == P.PAYMENT_STATUS_ACCEPTED
    (event,) = await _audited(operator, held, "payment.resolve")
    assert event.request_id == request_id and '"redrive"' in event.detail_json


# ---- item 4: the report ----------------------------------------------------------------------------------


async def test_the_batch_report_is_streamed_as_csv_with_exact_amounts_and_safe_cells(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    inputs = payments(1, 1205)
    inputs[0] = payment(1, reference_id="=HYPERLINK(1)")
    inputs[1] = payment(2, reference_id="-2+3")
    inputs[2] = payment(3, amount="1.234")  # rejected: an amount with three decimals
    name = (await deadline(client.upload(header(program), chunked(inputs, 500)))).batch.name
    await watch_to_end(client, name)

    pieces = [
        body
        async for body in client.stub.ExportPayments(
            api_pb.ExportPaymentsRequest(name=name), metadata=client.metadata
        )
    ]
    assert len(pieces) == 2 and all(b.content_type.startswith("text/csv") for b in pieces)
    table = list(csv.DictReader(io.StringIO(b"".join(b.data for b in pieces).decode())))
    assert len(table) == 1205
    stored = {p.reference_id: p for p in await all_payments(client, name)}
    by_ref = {row["reference_id"]: row for row in table}
    assert "'=HYPERLINK(1)" in by_ref and "'-2+3" in by_ref  # OWASP: never run as a formula
    for p in inputs[3:]:
        row, kept = by_ref[p.reference_id], stored[p.reference_id]
        assert Decimal(row["amount"]) == Decimal(p.amount) and row["currency_code"] == p.currency_code
        assert row["status"] == P.PaymentStatus.Name(kept.status).removeprefix("PAYMENT_STATUS_")
        assert (row["reason_code"], row["reason_message"]) == (kept.reason_code, kept.reason_message)
        assert row["rail_reference"] == kept.rail_reference
        assert row["update_time"].endswith("Z") and row["batch_create_time"].endswith("Z")
    rejected = by_ref["ref-00003"]
    assert rejected["status"] == "REJECTED" and rejected["reason_code"] == stored["ref-00003"].reason_code

    operator = gpo.client([], ["operator"])
    assert b"".join([piece async for piece in operator.report(name)]).decode().count("\r\n") == 1206
    await expect_error(anext(gpo.client([new_program()]).report(name)), grpc.StatusCode.NOT_FOUND)
    sidecar = _sidecar(gpo)
    try:
        await expect_error(
            anext(sidecar.report(name)), grpc.StatusCode.PERMISSION_DENIED, "SIDECAR_NOT_ALLOWED"
        )
    finally:
        await sidecar.close()


async def test_resolving_a_stuck_sent_payment_asks_its_rail_and_never_executes_it(store: Store) -> None:  # noqa: F811
    """A SENT payment flagged for attention gets a verify-only chunk (a look-up), whatever an operator
    wants; a final one flagged "paid more than once" only has its flag cleared. Both once per request id."""
    from sqlalchemy import select, update

    from gpo_server.storage.store import STUCK_UNANSWERED
    from gpo_server.storage.tables import batches, outbox, payments
    from gpo_server.work import RailWorkBuilder

    batch_id = await _batch_with_payments(store, 3)
    async with store.engine.connect() as conn:
        uid = (await conn.execute(select(batches.c.uid).where(batches.c.id == batch_id))).scalar_one()
    build = RailWorkBuilder({}, 1000)
    claim = await store.claim(batch_id, [1, 2], "gone:chunk", lease_s=0, max_call_s=0)
    paid_twice = ResultUpdate(2, PaymentStatus.SUCCEEDED, "", "", "r-2", True, rail_executions=2)
    await store.apply_results(batch_id, [paid_twice], owner="gone:chunk", token=claim.lease_token)
    async with store.engine.begin() as conn:  # payment 1: SENT, nobody holds it, swept past the limit
        await conn.execute(
            update(payments)
            .where(payments.c.batch_id == batch_id, payments.c.number == 1)
            .values(sweeps=4, attention_reason=STUCK_UNANSWERED)
        )
    stuck = await _payment(store, batch_id, 1)
    assert stuck.status == "sent" and stuck.attention_reason

    async def work() -> list[rail_pb2.WorkChunk]:
        async with store.engine.connect() as conn:
            query = select(outbox.c.payload).where(outbox.c.batch_id == batch_id).order_by(outbox.c.id)
            rows = (await conn.execute(query)).all()
        return [rail_pb2.WorkChunk.FromString(r.payload) for r in rows]

    before = len(await work())
    request_id = str(uuid.uuid4())
    assert await store.resolve_payment(batch_id, uid, 1, request_id, build) == "lookup"
    assert await store.resolve_payment(batch_id, uid, 1, request_id, build) is None  # AIP-155
    chunks = await work()
    assert len(chunks) == before + 1
    assert chunks[-1].verify_only
    assert [(i.payment_number, i.idempotency_key) for i in chunks[-1].items] == [(1, stuck.idempotency_key)]
    looked_up = await _payment(store, batch_id, 1)
    assert (looked_up.status, looked_up.sweeps) == ("sent", 0)  # the rail's answer settles it

    assert (await _payment(store, batch_id, 2)).attention_reason.startswith("paid more than once")
    assert await store.resolve_payment(batch_id, uid, 2, str(uuid.uuid4()), build) == "acknowledge"
    cleared = await _payment(store, batch_id, 2)
    assert (cleared.status, cleared.attention_reason) == ("succeeded", "")
    assert len(await work()) == before + 1  # nothing sent for a final payment
    request_id = str(uuid.uuid4())
    with pytest.raises(NothingToDo):  # not flagged: nothing done, and the request id stays unused
        await store.resolve_payment(batch_id, uid, 3, request_id, build)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(payments)
            .where(payments.c.batch_id == batch_id, payments.c.number == 3)
            .values(attention_reason="checked by hand")
        )
    assert await store.resolve_payment(batch_id, uid, 3, request_id, build) == "redrive"


# ---- the CLI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpo", ["embedded"], indirect=True)
async def test_the_operator_commands_of_gpo(gpo: Gpo, tmp_path: Path) -> None:
    from tests.integration.test_cli import cli, one_line_error

    program = new_program()
    client = gpo.client([program])
    since = _rfc3339(dt.datetime.now(dt.UTC))
    held = await _scheduled(client, program, 4)
    dead = await _dead_letter(gpo, held, [3, 4], max_redrives=0)
    operator = {"GPO_TOKEN": gpo.token([], ["operator"], subject="cli-operator")}

    async def gpo_cli(*args: str, env: dict[str, str] | None = None) -> list[dict[str, object]]:
        run = await cli(gpo, *args, tmp=tmp_path, env=env)
        assert run.code == 0, run.err
        return run.records

    listed = await gpo_cli("batches", "--program", program, "--state", "processing", "--since", since)
    assert [b["name"] for b in listed] == [held]
    assert await gpo_cli("batches", "--program", program, "--state", "completed") == []
    found = await gpo_cli("payments", "--reference", "ref-00002")
    assert [p["name"] for p in found] == [f"{held}/payments/ref-00002"]
    flagged = await gpo_cli("payments", held, "--attention", "--rail", gpo.rail)
    assert [p["reference_id"] for p in flagged] == ["ref-00003", "ref-00004"]

    (cancelled,) = await gpo_cli("cancel-payment", held, "ref-00001", "--request-id", str(uuid.uuid4()))
    assert cancelled["status"] == "PAYMENT_STATUS_CANCELLED"
    (resolved,) = await gpo_cli("resolve", held, "ref-00003", env=operator)
    assert resolved["status"] == "PAYMENT_STATUS_ACCEPTED" and not resolved.get("attention_reason")
    (redriven,) = await gpo_cli("redrive", dead.removeprefix("deadLetters/"), env=operator)
    # Both never-claimed payments, ref-00003 again too: its key is the same, and claims let one hold it.
    assert redriven["redriven_count"] == "2"
    refused = await cli(gpo, "redrive", dead, tmp=tmp_path)  # a program caller's token
    one_line_error(refused, 5, "operator")
    refused = await cli(gpo, "retry-payment", held, "ref-00002", tmp=tmp_path, env=operator)
    one_line_error(refused, 5, "FAILED")

    out = tmp_path / "report.csv"
    await gpo_cli("report", held, "--output", str(out))
    table = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [(r["reference_id"], r["status"]) for r in table] == [
        ("ref-00001", "CANCELLED"),
        ("ref-00002", "ACCEPTED"),
        ("ref-00003", "ACCEPTED"),
        ("ref-00004", "ACCEPTED"),
    ]
    actions = [e.action async for e in gpo.client([], ["operator"]).audit_events(held)]
    assert {"payment.cancel", "payment.resolve", "deadletter.redrive"} <= set(actions)
