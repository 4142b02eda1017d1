"""The gRPC API against a real in-process Orchestrator, on both backends (see the `gpo` fixture).

Every batch that starts dispatching is followed to its end, and what the simulator rail really executed
(its ledger) is compared with what GPO reports: exact decimal sums, each payment executed at most once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc
from gpo.v1 import rail_pb2, rail_pb2_grpc
from gpo.v1 import resources_pb2 as res_pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gpo_server.api.auth import mint_token
from gpo_server.client import GpoClient, chunked
from rail_sidecars.rails.simulator.store import Ledger, read_totals
from tests.conftest import Gpo

WAIT = 60.0  # seconds: a generous deadline for anything asynchronous; never an assertion about speed
PAYER = "account:treasury-001@central-bank"
MONEY = re.compile(r"[0-9]{1,13}\.[0-9]{1,2}")
SUCCEEDED, FAILED = res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED
REJECTED, CANCELLED = res_pb.PAYMENT_STATUS_REJECTED, res_pb.PAYMENT_STATUS_CANCELLED
T = TypeVar("T")


# ---- helpers -------------------------------------------------------------------------------------


def new_program() -> str:
    return f"prog-{uuid.uuid4().hex[:10]}"


def header(program: str, **fields: Any) -> api_pb.BatchHeader:
    return api_pb.BatchHeader(program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER, **fields)


def payment(i: int, **overrides: Any) -> api_pb.PaymentInput:
    """A valid payment; amounts vary in size and in the number of fraction digits, over two currencies."""
    whole = (i * 7919) % 250_000 + 1
    amount = f"{whole}.{i % 10}" if i % 4 == 0 else f"{whole}.{(i * 37) % 100:02d}"
    fields: dict[str, Any] = {
        "reference_id": f"ref-{i:05d}",
        "payee_fa": f"mobile:2547{i:08d}@mpesa" if i % 3 else f"account:{10**9 + i}@bank-a",
        "amount": amount,
        "currency_code": "USD" if i % 5 == 0 else "KES",
        "payee_name": f"Beneficiary {i}",
        "purpose": "cash-transfer",
    }
    fields.update(overrides)
    return api_pb.PaymentInput(**fields)


def payments(start: int, count: int) -> list[api_pb.PaymentInput]:
    return [payment(i) for i in range(start, start + count)]


def chunk_request(sequence: int, items: Sequence[api_pb.PaymentInput]) -> api_pb.UploadBatchRequest:
    return api_pb.UploadBatchRequest(chunk=api_pb.PaymentChunk(sequence=sequence, payments=items))


async def deadline(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT):
        return await awaitable


async def watch_to_end(client: GpoClient, name: str) -> res_pb.Batch:
    """Follows WatchBatch until the server ends it (the batch is final)."""
    last = None
    async with asyncio.timeout(WAIT):
        async for batch in client.watch(name):
            last = batch
    assert last is not None
    return last


async def all_payments(client: GpoClient, name: str, filter: str = "") -> list[res_pb.Payment]:
    return [p async for p in client.payments(name, filter=filter)]


async def raw_upload(
    client: GpoClient,
    requests: Iterable[api_pb.UploadBatchRequest],
    responses: list[api_pb.UploadBatchResponse] | None = None,
) -> None:
    """Sends exactly these messages, collecting the replies (so they survive an error).

    Lockstep: each message's reply is read before the next is written, so no write races the status of a
    call the server ends; grpc-python's asyncio client reports INTERNAL "Internal error from Core" instead
    of the server's status when a write fails that way (grpc/grpc#36066).
    """
    responses = [] if responses is None else responses
    call = client.stub.UploadBatch(metadata=client.metadata)
    async with asyncio.timeout(WAIT):
        for request in requests:
            await call.write(request)
            responses.append(await call.read())
        await call.done_writing()
        while (response := await call.read()) is not grpc.aio.EOF:
            responses.append(response)


async def expect_error(
    awaitable: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None
) -> tuple[error_details_pb2.ErrorInfo, list[error_details_pb2.BadRequest.FieldViolation]]:
    """Awaits a call that must fail with `code` and an ErrorInfo of `reason`; returns the decoded details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await deadline(awaitable)
    error = caught.value
    assert error.code() == code, error.details()
    status = rpc_status.from_call(error)
    info, violations = error_details_pb2.ErrorInfo(), []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                detail.Unpack(info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(bad.field_violations)
    if reason is not None:
        assert status is not None, f"{code.name} carries no google.rpc.Status details"
        assert (info.domain, info.reason) == ("gpo.dev", reason), error.details()
    return info, violations


def amount_of(p: api_pb.PaymentInput) -> Decimal:
    """What GPO counts of an input's amount: the exact value when it is a money amount, else nothing."""
    return Decimal(p.amount) if MONEY.fullmatch(p.amount) else Decimal(0)


def totals_of(batch: res_pb.Batch) -> dict[tuple[res_pb.PaymentStatus, str], tuple[int, Decimal]]:
    totals = {(t.status, t.currency_code): (t.count, Decimal(t.amount)) for t in batch.totals}
    assert len(totals) == len(batch.totals), "a (status, currency) pair is totalled twice"
    for t in batch.totals:
        assert MONEY.fullmatch(t.amount) and len(t.amount.split(".")[1]) == 2, t.amount  # canonical form
    return totals


def expected_totals(
    inputs: Sequence[api_pb.PaymentInput], stored: Sequence[res_pb.Payment]
) -> dict[tuple[int, str], tuple[int, Decimal]]:
    """Totals computed here from what was sent and each payment's status; inputs in upload order."""
    assert [p.reference_id for p in stored] == [p.reference_id for p in inputs]
    counts: Counter[tuple[int, str]] = Counter()
    sums: defaultdict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for sent, payment in zip(inputs, stored, strict=True):
        key = (payment.status, sent.currency_code)
        counts[key] += 1
        if payment.reason_code != "rjct.amount.invalid":
            sums[key] += amount_of(sent)
    return {key: (n, sums[key]) for key, n in counts.items()}


def check_ledger(gpo: Gpo, stored: Sequence[res_pb.Payment]) -> None:
    """The rail executed exactly the SUCCEEDED and FAILED payments, each once, for exactly their amounts."""
    ledger = read_totals(gpo.ledger)
    executed = [p for p in stored if p.status in (SUCCEEDED, FAILED)]
    succeeded = [p for p in stored if p.status == SUCCEEDED]
    by_currency: defaultdict[str, Decimal] = defaultdict(Decimal)
    for p in succeeded:
        by_currency[p.currency_code] += Decimal(p.amount)
    assert ledger.duplicates == 0
    assert ledger.executions == len(executed)
    assert ledger.payments == len(succeeded)
    assert ledger.failed == len(executed) - len(succeeded)
    assert {c: Decimal(a) for c, a in ledger.amounts_by_currency.items()} == dict(by_currency)
    assert Decimal(ledger.amount) == sum(by_currency.values(), Decimal(0))
    with Ledger(gpo.ledger) as records:
        executions = records.executions_sync([p.idempotency_key for p in stored])
        outcomes = records.look_up_sync([p.idempotency_key for p in executed])
    assert executions == {p.idempotency_key: 1 for p in executed}
    for p in executed:  # GPO recorded the rail's own outcome and reference for every payment
        result = outcomes[p.idempotency_key]
        assert (str(result.outcome), result.rail_reference) == (
            "succeeded" if p.status == SUCCEEDED else "failed",
            p.rail_reference,
        )
        assert p.rail == gpo.rail
        assert (p.reason_code == "") == (p.status == SUCCEEDED)


async def check_final(
    gpo: Gpo,
    client: GpoClient,
    name: str,
    inputs: Sequence[api_pb.PaymentInput],
    earlier: Sequence[res_pb.Payment] = (),
) -> list[res_pb.Payment]:
    """Watches the batch to COMPLETED, then checks its totals and the ledger against what was sent.

    `earlier`: the payments of batches this server's rail executed before, which the ledger holds too.
    """
    batch = await watch_to_end(client, name)
    assert batch.state == res_pb.BATCH_STATE_COMPLETED
    assert batch.payment_count == len(inputs)
    stored = await all_payments(client, name)
    assert not {p.status for p in stored} - {SUCCEEDED, FAILED, REJECTED}
    assert totals_of(batch) == expected_totals(inputs, stored)
    assert totals_of(await client.get_batch(name)) == totals_of(batch)
    check_ledger(gpo, [*earlier, *stored])
    return stored


# ---- upload and dispatch -----------------------------------------------------------------------


async def test_chunked_upload_completes_with_exact_totals_matching_the_ledger(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    inputs = payments(1, 63)
    acks: list[api_pb.UploadBatchResponse] = []
    result = await deadline(client.upload(header(program), chunked(inputs, 20), on_ack=acks.append))

    chunk_acks = [a for a in acks if a.acknowledged_sequence]
    assert [a.acknowledged_sequence for a in chunk_acks] == [1, 2, 3, 4]
    assert [a.batch.payment_count for a in chunk_acks] == [20, 40, 60, 63]
    assert [a.batch.last_chunk_sequence for a in chunk_acks] == [1, 2, 3, 4]
    assert all(not a.rejections for a in chunk_acks)
    assert {a.batch.name for a in acks} == {result.batch.name}
    assert result.batch.state in (res_pb.BATCH_STATE_PROCESSING, res_pb.BATCH_STATE_COMPLETED)
    assert (result.batch.payment_count, result.batch.last_chunk_sequence) == (63, 4)
    assert result.batch.program == program and result.batch.payer_fa == PAYER

    stored = await check_final(gpo, client, result.batch.name, inputs)
    assert all(Decimal(p.amount) == Decimal(i.amount) for p, i in zip(stored, inputs, strict=True))
    assert all(p.name == f"{result.batch.name}/payments/{p.reference_id}" for p in stored)
    assert len({p.idempotency_key for p in stored}) == len(stored)


async def test_invalid_payments_are_rejected_individually_with_g2p_reason_codes(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    first = [
        payment(1),
        payment(2, reference_id="bad-amount-exp", amount="1e5"),
        payment(3, reference_id="bad-amount-frac", amount="0.001"),
        payment(4, reference_id="bad-amount-neg", amount="-1.00"),
        payment(5),
        payment(6, reference_id="bad-currency", currency_code="kes"),
        payment(7, reference_id="bad-payee", payee_fa="not-an-address"),
        payment(8, reference_id="dup-across"),
        payment(9, reference_id="dup-within"),
        payment(10),
        payment(11, reference_id="dup-within"),
    ]
    second = [payment(12), payment(13, reference_id="dup-across"), payment(14)]
    acks: list[api_pb.UploadBatchResponse] = []
    result = await deadline(client.upload(header(program), [first, second], on_ack=acks.append))

    rejections = {
        a.acknowledged_sequence: [(r.reference_id, r.index, r.reason_code) for r in a.rejections]
        for a in acks
        if a.acknowledged_sequence
    }
    assert rejections == {
        1: [
            ("bad-amount-exp", 1, "rjct.amount.invalid"),
            ("bad-amount-frac", 2, "rjct.amount.invalid"),
            ("bad-amount-neg", 3, "rjct.amount.invalid"),
            ("bad-currency", 5, "rjct.currency_code.invalid"),
            ("bad-payee", 6, "rjct.payee_fa.invalid"),
            ("dup-within", 10, "rjct.reference_id.duplicate"),
        ],
        2: [("dup-across", 1, "rjct.reference_id.duplicate")],
    }
    assert all(r.message for a in acks for r in a.rejections)
    assert result.batch.payment_count == 14  # every payment received is counted, valid or not

    stored = await check_final(gpo, client, result.batch.name, first + second)
    rejected = await all_payments(client, result.batch.name, filter="status = REJECTED")
    assert [(p.reference_id, p.reason_code) for p in rejected] == [
        ("bad-amount-exp", "rjct.amount.invalid"),
        ("bad-amount-frac", "rjct.amount.invalid"),
        ("bad-amount-neg", "rjct.amount.invalid"),
        ("bad-currency", "rjct.currency_code.invalid"),
        ("bad-payee", "rjct.payee_fa.invalid"),
        ("dup-within", "rjct.reference_id.duplicate"),
        ("dup-across", "rjct.reference_id.duplicate"),
    ]
    assert all(p.rail == "" and p.reason_message for p in rejected)
    # The first use of each duplicated reference is a valid payment and was paid or failed on the rail.
    valid = [p for p in stored if p.status != REJECTED]
    assert len(valid) == 7
    assert Counter(p.reference_id for p in valid)["dup-across"] == 1
    assert Counter(p.reference_id for p in valid)["dup-within"] == 1
    assert sum(t.count for t in result.batch.totals if t.status == REJECTED) == 7  # known at upload end


async def test_a_reference_stored_two_chunks_earlier_is_rejected_and_the_rest_of_its_chunk_stored(
    gpo: Gpo,
) -> None:
    # Only the database knows chunk 1's references when chunk 3 arrives: intake writes optimistically,
    # the unique index refuses the chunk, and it is prepared again against the stored references.
    program = new_program()
    client = gpo.client([program])
    first, second = payments(1, 5), payments(6, 5)
    third = [payment(11), payment(12, reference_id=first[2].reference_id), payment(13)]
    acks: list[api_pb.UploadBatchResponse] = []
    result = await deadline(client.upload(header(program), [first, second, third], on_ack=acks.append))

    rejections = {
        a.acknowledged_sequence: [(r.reference_id, r.index, r.reason_code) for r in a.rejections]
        for a in acks
        if a.acknowledged_sequence
    }
    assert rejections == {1: [], 2: [], 3: [(first[2].reference_id, 1, "rjct.reference_id.duplicate")]}
    assert result.batch.payment_count == 13
    stored = await check_final(gpo, client, result.batch.name, first + second + third)
    valid = [p for p in stored if p.status != REJECTED]
    assert len(valid) == 12
    assert Counter(p.reference_id for p in valid)[first[2].reference_id] == 1
    assert {p.reference_id for p in valid} >= {third[0].reference_id, third[2].reference_id}


async def test_resending_a_request_id_returns_the_same_batch_and_stores_nothing_twice(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    inputs = payments(100, 30)
    first_header = header(program)
    first = await deadline(client.upload(first_header, chunked(inputs, 10)))
    await watch_to_end(client, first.batch.name)

    acks: list[api_pb.UploadBatchResponse] = []
    again = await deadline(client.upload(first_header, chunked(inputs, 10), on_ack=acks.append))
    assert again.batch.name == first.batch.name
    assert again.batch.state == res_pb.BATCH_STATE_COMPLETED
    assert again.batch.payment_count == 30
    chunk_acks = [a for a in acks if a.acknowledged_sequence]
    assert [a.acknowledged_sequence for a in chunk_acks] == [1, 2, 3]
    assert [a.batch.payment_count for a in chunk_acks] == [30, 30, 30]
    assert all(not a.rejections for a in chunk_acks)

    # The same request_id with a different header is a conflict, not a second batch.
    changed = api_pb.BatchHeader()
    changed.CopyFrom(first_header)
    changed.payer_fa = "account:other-001@central-bank"
    info, _ = await expect_error(
        raw_upload(client, [api_pb.UploadBatchRequest(header=changed)]),
        grpc.StatusCode.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )
    assert info.metadata["batch"] == first.batch.name

    await check_final(gpo, client, first.batch.name, inputs)
    listed = await deadline(
        client.stub.ListBatches(api_pb.ListBatchesRequest(program=program), metadata=client.metadata)
    )
    assert [b.name for b in listed.batches] == [first.batch.name]


async def test_an_interrupted_upload_resumes_after_its_last_chunk_sequence(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    inputs = payments(300, 50)
    chunks = list(chunked(inputs, 10))
    the_header = header(program)

    call = client.stub.UploadBatch(metadata=client.metadata)
    async with asyncio.timeout(WAIT):
        await call.write(api_pb.UploadBatchRequest(header=the_header))
        opened = await call.read()
        for sequence in (1, 2):
            await call.write(chunk_request(sequence, chunks[sequence - 1]))
            ack = await call.read()
            assert ack.acknowledged_sequence == sequence
        # Chunk 3 is sent but the connection dies before its acknowledgement is read.
        await call.write(chunk_request(3, chunks[2]))
    call.cancel()
    name = opened.batch.name
    assert opened.batch.state == res_pb.BATCH_STATE_UPLOADING

    # Chunk 3 was committed or not: either way the batch says where to resume, and nothing went out.
    held = await client.get_batch(name)
    assert held.state == res_pb.BATCH_STATE_UPLOADING
    assert held.last_chunk_sequence in (2, 3)
    assert held.payment_count == 10 * held.last_chunk_sequence
    assert {p.status for p in await all_payments(client, name)} == {res_pb.PAYMENT_STATUS_ACCEPTED}

    resume_from = held.last_chunk_sequence + 1
    result = await deadline(client.upload(the_header, chunks[resume_from - 1 :], first_sequence=resume_from))
    assert result.batch.name == name
    assert (result.batch.payment_count, result.batch.last_chunk_sequence) == (50, 5)
    stored = await check_final(gpo, client, name, inputs)
    assert [p.reference_id for p in stored] == [p.reference_id for p in inputs]


async def test_a_declared_payment_count_holds_the_batch_until_it_is_reached(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    inputs = payments(400, 25)
    declared = header(program, expected_payment_count=25)
    partial = await deadline(client.upload(declared, [inputs[:10], inputs[10:15]]))
    assert partial.batch.state == res_pb.BATCH_STATE_UPLOADING
    assert (partial.batch.payment_count, partial.batch.expected_payment_count) == (15, 25)
    held = await client.get_batch(partial.batch.name)
    assert held.state == res_pb.BATCH_STATE_UPLOADING
    assert {p.status for p in await all_payments(client, held.name)} == {res_pb.PAYMENT_STATUS_ACCEPTED}

    rest = await deadline(client.upload(declared, [inputs[15:]], first_sequence=3))
    assert rest.batch.name == partial.batch.name
    assert rest.batch.state in (res_pb.BATCH_STATE_PROCESSING, res_pb.BATCH_STATE_COMPLETED)
    assert rest.batch.payment_count == 25
    await check_final(gpo, client, rest.batch.name, inputs)


# ---- upload errors -----------------------------------------------------------------------------


async def test_an_out_of_order_chunk_is_a_failed_precondition(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    the_header = header(program)
    responses: list[api_pb.UploadBatchResponse] = []
    requests = [
        api_pb.UploadBatchRequest(header=the_header),
        chunk_request(1, payments(1, 3)),
        chunk_request(3, payments(4, 3)),
    ]
    info, _ = await expect_error(
        raw_upload(client, requests, responses), grpc.StatusCode.FAILED_PRECONDITION, "CHUNK_OUT_OF_ORDER"
    )
    assert info.metadata["expected_sequence"] == "2"
    assert [r.acknowledged_sequence for r in responses] == [0, 1]
    batch = await client.get_batch(responses[0].batch.name)
    assert (batch.state, batch.last_chunk_sequence, batch.payment_count) == (
        res_pb.BATCH_STATE_UPLOADING,
        1,
        3,
    )


async def test_a_chunk_after_the_upload_ended_is_refused_and_not_stored(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    # Scheduled an hour ahead, so the finished batch stays PROCESSING with nothing dispatched.
    the_header = header(program, schedule_time=_in_one_hour())
    inputs = payments(1, 10)
    done = await deadline(client.upload(the_header, [inputs]))
    name = done.batch.name
    assert done.batch.state == res_pb.BATCH_STATE_PROCESSING
    await expect_error(
        raw_upload(client, [api_pb.UploadBatchRequest(header=the_header), chunk_request(2, payments(11, 5))]),
        grpc.StatusCode.FAILED_PRECONDITION,
        "UPLOAD_COMPLETE",
    )
    batch = await client.get_batch(name)
    assert (batch.payment_count, batch.last_chunk_sequence) == (10, 1)
    assert [p.reference_id for p in await all_payments(client, name)] == [p.reference_id for p in inputs]
    assert (await client.cancel(name)).state == res_pb.BATCH_STATE_CANCELLED

    # A batch cancelled while its upload stream is open takes no more chunks either.
    call = client.stub.UploadBatch(metadata=client.metadata)
    async with asyncio.timeout(WAIT):
        await call.write(api_pb.UploadBatchRequest(header=header(program)))
        other = (await call.read()).batch.name
        await call.write(chunk_request(1, payments(20, 5)))
        assert (await call.read()).acknowledged_sequence == 1
        assert (await client.cancel(other)).state == res_pb.BATCH_STATE_CANCELLED
        await call.write(chunk_request(2, payments(25, 5)))
    await expect_error(call.read(), grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_COMPLETE")
    batch = await client.get_batch(other)
    assert (batch.state, batch.payment_count, batch.last_chunk_sequence) == (
        res_pb.BATCH_STATE_CANCELLED,
        5,
        1,
    )
    assert {p.status for p in await all_payments(client, other)} == {CANCELLED}
    assert (await watch_to_end(client, other)).state == res_pb.BATCH_STATE_CANCELLED
    assert read_totals(gpo.ledger).executions == 0


async def test_a_chunk_before_the_header_is_invalid(gpo: Gpo) -> None:
    client = gpo.client([new_program()])
    responses: list[api_pb.UploadBatchResponse] = []
    await expect_error(
        raw_upload(client, [chunk_request(1, payments(1, 2))], responses),
        grpc.StatusCode.INVALID_ARGUMENT,
        "HEADER_MISSING",
    )
    assert responses == []


async def test_an_empty_batch_is_invalid(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    await expect_error(
        raw_upload(client, [api_pb.UploadBatchRequest(header=header(program))], []),
        grpc.StatusCode.INVALID_ARGUMENT,
        "EMPTY_BATCH",
    )
    await expect_error(raw_upload(client, [], []), grpc.StatusCode.INVALID_ARGUMENT, "HEADER_MISSING")


async def test_a_bad_request_id_is_a_field_violation(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    bad = header(program)
    bad.request_id = "not-a-uuid"
    _, violations = await expect_error(
        raw_upload(client, [api_pb.UploadBatchRequest(header=bad)]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_HEADER",
    )
    assert [v.field for v in violations] == ["header.request_id"]
    assert violations[0].description
    listed = await client.stub.ListBatches(
        api_pb.ListBatchesRequest(program=program), metadata=client.metadata
    )
    assert list(listed.batches) == []


# ---- authentication and authorization ----------------------------------------------------------


async def test_a_call_without_a_valid_token_is_unauthenticated(gpo: Gpo) -> None:
    program = new_program()
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        stub = api_grpc.DisbursementServiceStub(channel)
        await expect_error(
            stub.ListBatches(api_pb.ListBatchesRequest()), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"
        )
        # The server refuses an upload before reading anything (so nothing is written: see raw_upload).
        await expect_error(stub.UploadBatch().read(), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
        forged = mint_token(b"another secret entirely, not the server's", "intruder", [program])
        await expect_error(
            stub.ListBatches(api_pb.ListBatchesRequest(), metadata=(("authorization", f"Bearer {forged}"),)),
            grpc.StatusCode.UNAUTHENTICATED,
            "UNAUTHENTICATED",
        )


async def test_programs_are_isolated_from_each_other(gpo: Gpo) -> None:
    mine, theirs = new_program(), new_program()
    owner, outsider = gpo.client([mine]), gpo.client([theirs])
    inputs = payments(1, 5)
    result = await deadline(owner.upload(header(mine), [inputs]))
    name = result.batch.name

    await expect_error(
        raw_upload(outsider, [api_pb.UploadBatchRequest(header=header(mine))]),
        grpc.StatusCode.PERMISSION_DENIED,
        "PROGRAM_FORBIDDEN",
    )
    # Another program's batch is reported as missing, whatever the call.
    info, _ = await expect_error(outsider.get_batch(name), grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND")
    assert info.metadata["name"] == name
    await expect_error(all_payments(outsider, name), grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND")
    await expect_error(watch_to_end(outsider, name), grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND")
    await expect_error(outsider.cancel(name), grpc.StatusCode.NOT_FOUND, "BATCH_NOT_FOUND")
    listed = await outsider.stub.ListBatches(api_pb.ListBatchesRequest(), metadata=outsider.metadata)
    assert name not in {b.name for b in listed.batches}
    listed = await outsider.stub.ListBatches(
        api_pb.ListBatchesRequest(program=mine), metadata=outsider.metadata
    )
    assert list(listed.batches) == []
    # ...and the outsider's attempt changed nothing.
    await check_final(gpo, owner, name, inputs)


async def test_only_sidecars_may_call_the_rail_service(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    result = await deadline(client.upload(header(program, schedule_time=_in_one_hour()), [payments(1, 3)]))
    name = result.batch.name
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        stub = rail_pb2_grpc.RailServiceStub(channel)
        claim = rail_pb2.ClaimWorkChunkRequest(
            chunk_id=str(uuid.uuid4()), batch=name, payment_numbers=[1, 2, 3]
        )
        for token, reason in (
            (gpo.token([program]), "NOT_A_SIDECAR"),
            (gpo.token([], ["operator"]), "NOT_A_SIDECAR"),
            # What `gpo token --sidecar` minted before issue 12: every program and the sidecar role.
            (gpo.token(["*"], ["sidecar"]), "ROLES_NOT_DISJOINT"),
        ):
            metadata = (("authorization", f"Bearer {token}"),)
            await expect_error(
                stub.ClaimWorkChunk(claim, metadata=metadata), grpc.StatusCode.PERMISSION_DENIED, reason
            )
            # The results stream is refused before the server reads any request (see raw_upload).
            await expect_error(
                stub.ReportResults(metadata=metadata).read(), grpc.StatusCode.PERMISSION_DENIED, reason
            )
        await expect_error(stub.ClaimWorkChunk(claim), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    # Nothing was claimed or reported: the payments are untouched, and cancelling finishes them.
    assert {p.status for p in await all_payments(client, name)} == {res_pb.PAYMENT_STATUS_ACCEPTED}
    cancelled = await client.cancel(name)
    assert cancelled.state == res_pb.BATCH_STATE_CANCELLED


# ---- reads -------------------------------------------------------------------------------------


async def test_list_payments_pages_walk_every_payment_once_in_order(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    inputs = payments(1, 40)
    for i in (3, 11, 12, 30):
        inputs[i] = payment(i + 1, amount="1e5")
    result = await deadline(client.upload(header(program), chunked(inputs, 15)))
    name = result.batch.name
    await check_final(gpo, client, name, inputs)

    async def walk(page_size: int, filter: str = "") -> list[list[res_pb.Payment]]:
        pages, token = [], ""
        while True:
            page = await client.stub.ListPayments(
                api_pb.ListPaymentsRequest(parent=name, page_size=page_size, page_token=token, filter=filter),
                metadata=client.metadata,
            )
            pages.append(list(page.payments))
            token = page.next_page_token
            if not token:
                return pages

    pages = await deadline(walk(7))
    assert [len(p) for p in pages] == [7, 7, 7, 7, 7, 5]
    assert [p.reference_id for page in pages for p in page] == [p.reference_id for p in inputs]

    rejected = await deadline(walk(3, "status = REJECTED"))
    assert [len(p) for p in rejected] == [3, 1]
    assert [p.reference_id for page in rejected for p in page] == [
        inputs[i].reference_id for i in (3, 11, 12, 30)
    ]
    assert {p.status for page in rejected for p in page} == {REJECTED}
    either = await all_payments(client, name, filter="status = SUCCEEDED OR status = FAILED")
    assert [p.reference_id for p in either] == [
        p.reference_id for i, p in enumerate(inputs) if i not in (3, 11, 12, 30)
    ]

    for token in ("not-a-token", "bm9wZQ=="):
        await expect_error(
            client.stub.ListPayments(
                api_pb.ListPaymentsRequest(parent=name, page_token=token), metadata=client.metadata
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
    # A token belongs to its query: it does not carry over to another filter.
    first = await client.stub.ListPayments(
        api_pb.ListPaymentsRequest(parent=name, page_size=7), metadata=client.metadata
    )
    await expect_error(
        client.stub.ListPayments(
            api_pb.ListPaymentsRequest(
                parent=name, page_size=7, filter="status = FAILED", page_token=first.next_page_token
            ),
            metadata=client.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    await expect_error(
        all_payments(client, name, filter="amount > 5"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER"
    )


async def test_list_batches_pages_newest_first(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    names = []
    for n in range(5):
        names.append((await deadline(client.upload(header(program), [payments(10 * n + 1, 2)]))).batch.name)
    await deadline(asyncio.gather(*(watch_to_end(client, name) for name in names)))

    async def walk(request: api_pb.ListBatchesRequest) -> list[list[str]]:
        pages = []
        while True:
            page = await client.stub.ListBatches(request, metadata=client.metadata)
            pages.append([b.name for b in page.batches])
            if not page.next_page_token:
                return pages
            request.page_token = page.next_page_token

    newest_first = names[::-1]
    assert await deadline(walk(api_pb.ListBatchesRequest(program=program, page_size=2))) == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:],
    ]
    # The token only sees its program's batches, so the unfiltered listing is the same.
    assert await deadline(walk(api_pb.ListBatchesRequest(page_size=3))) == [
        newest_first[:3],
        newest_first[3:],
    ]
    assert await deadline(walk(api_pb.ListBatchesRequest())) == [newest_first]
    page = await client.stub.ListBatches(
        api_pb.ListBatchesRequest(program=program, page_size=2), metadata=client.metadata
    )
    await expect_error(
        client.stub.ListBatches(
            api_pb.ListBatchesRequest(page_size=2, page_token=page.next_page_token), metadata=client.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    batch = (
        await client.stub.ListBatches(
            api_pb.ListBatchesRequest(program=program, page_size=1), metadata=client.metadata
        )
    ).batches[0]
    assert (batch.state, batch.payment_count, sum(t.count for t in batch.totals)) == (
        res_pb.BATCH_STATE_COMPLETED,
        2,
        2,
    )


# ---- cancel ------------------------------------------------------------------------------------


def _in_one_hour() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    return ts


async def test_cancelling_a_scheduled_batch_cancels_every_payment_and_pays_none(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    later = _in_one_hour()
    inputs = payments(500, 24)
    inputs[5] = payment(505, currency_code="kes")
    scheduled = await deadline(client.upload(header(program, schedule_time=later), chunked(inputs, 10)))
    name = scheduled.batch.name
    assert scheduled.batch.schedule_time == later
    assert scheduled.batch.state == res_pb.BATCH_STATE_PROCESSING

    # A batch that is not scheduled goes out meanwhile: the rail is working, the scheduled batch waits.
    other = payments(600, 6)
    now = await deadline(client.upload(header(program), [other]))
    await check_final(gpo, client, now.batch.name, other)
    assert {p.status for p in await all_payments(client, name)} == {res_pb.PAYMENT_STATUS_ACCEPTED, REJECTED}

    cancelled = await client.cancel(name, request_id=str(uuid.uuid4()))
    assert cancelled.state == res_pb.BATCH_STATE_CANCELLED
    stored = await all_payments(client, name)
    assert totals_of(cancelled) == expected_totals(inputs, stored)
    assert {(p.status, p.reason_code) for p in stored} == {
        (CANCELLED, "rjct.batch.cancelled"),
        (REJECTED, "rjct.currency_code.invalid"),
    }
    assert sum(p.status == CANCELLED for p in stored) == 23
    # The watch ends at once: nothing of the batch is pending any more.
    assert (await watch_to_end(client, name)).state == res_pb.BATCH_STATE_CANCELLED
    # Cancelling again is harmless.
    assert totals_of(await client.cancel(name)) == totals_of(cancelled)
    assert (await client.get_batch(name)).state == res_pb.BATCH_STATE_CANCELLED
    with Ledger(gpo.ledger) as records:
        assert records.executions_sync([p.idempotency_key for p in stored]) == {}
    assert read_totals(gpo.ledger).executions == len(other)


# ---- service health and robustness -------------------------------------------------------------


async def test_health_check_is_serving(gpo: Gpo) -> None:
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "gpo.v1.DisbursementService", "gpo.v1.RailService"):
            reply = await deadline(stub.Check(health_pb2.HealthCheckRequest(service=service)))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_the_server_keeps_serving_others_after_a_bad_client(gpo: Gpo) -> None:
    program = new_program()
    bad = gpo.client([program])
    good = gpo.client([program])
    inputs = payments(700, 30)

    async def misbehave() -> None:
        await expect_error(
            raw_upload(bad, [chunk_request(1, payments(1, 2))], []),
            grpc.StatusCode.INVALID_ARGUMENT,
            "HEADER_MISSING",
        )
        await expect_error(
            raw_upload(bad, [api_pb.UploadBatchRequest()], []),
            grpc.StatusCode.INVALID_ARGUMENT,
            "EMPTY_MESSAGE",
        )
        the_header = header(program)
        await expect_error(
            raw_upload(
                bad,
                [api_pb.UploadBatchRequest(header=the_header), api_pb.UploadBatchRequest(header=the_header)],
                [],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "HEADER_REPEATED",
        )
        await expect_error(
            raw_upload(
                bad, [api_pb.UploadBatchRequest(header=header(program)), chunk_request(0, payments(1, 1))], []
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SEQUENCE",
        )
        await expect_error(
            bad.get_batch("batches/../../etc"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_BATCH_NAME"
        )
        # A stream abandoned mid-upload, its channel closed without a half-close.
        call = bad.stub.UploadBatch(metadata=bad.metadata)
        await call.write(api_pb.UploadBatchRequest(header=header(program)))
        await call.write(chunk_request(1, payments(1, 5)))
        await call.read()
        await bad.close()

    result, _ = await deadline(asyncio.gather(good.upload(header(program), chunked(inputs, 10)), misbehave()))
    first = await check_final(gpo, good, result.batch.name, inputs)
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    # And a new client after all that is served too.
    after = payments(800, 4)
    again = await deadline(gpo.client([program]).upload(header(program), [after]))
    await check_final(gpo, gpo.client([program]), again.batch.name, after, earlier=first)


async def test_a_watch_recounts_payments_only_when_the_batch_row_changes(
    gpo: Gpo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting is a GROUP BY over the batch: a watcher polls the batch row, and counts again only when
    that row shows settlements or a new state (or after watch_recount_s)."""
    service = gpo.orchestrator.disbursements
    monkeypatch.setattr(service, "watch_interval_s", 0.05)
    monkeypatch.setattr(service, "watch_recount_s", 3600.0)
    program = new_program()
    client = gpo.client([program])
    inputs = payments(800, 12)
    scheduled = await deadline(client.upload(header(program, schedule_time=_in_one_hour()), [inputs]))
    name = scheduled.batch.name

    counted: list[int] = []
    polled: list[str] = []
    ten_polls = asyncio.Event()
    count, poll = service.store.batch_totals, service.store.get_batch

    async def counting(batch_id: int) -> Any:
        counted.append(batch_id)
        return await count(batch_id)

    async def polling(uid: str) -> Any:
        polled.append(uid)
        if len(polled) >= 10:
            ten_polls.set()
        return await poll(uid)

    monkeypatch.setattr(service.store, "batch_totals", counting)
    monkeypatch.setattr(service.store, "get_batch", polling)
    views: list[res_pb.Batch] = []

    async def watch() -> None:
        async for batch in client.watch(name):
            views.append(batch)

    watcher = asyncio.create_task(watch())
    await deadline(ten_polls.wait())  # the batch row read ten times, unchanged (nothing is due for an hour)
    assert len(counted) == 1
    assert len(views) == 1 and views[0].state == res_pb.BATCH_STATE_PROCESSING

    await client.cancel(name, request_id=str(uuid.uuid4()))  # a new state: counted again, and final
    await deadline(watcher)
    assert len(counted) == 3  # the cancel's own answer, then the watcher's one recount
    assert views[-1].state == res_pb.BATCH_STATE_CANCELLED
    assert totals_of(views[-1]) == expected_totals(inputs, await all_payments(client, name))
