"""Hostile and malformed input, one table of cases, on both backends (see the `gpo` fixture).

Each case expects a precise answer: either one payment refused with its G2P reason code while the rest of
its chunk is accepted, or the whole stream ended with a gRPC status and an ErrorInfo reason. After each
case, what was accepted before the fault is intact and resumable, every batch reaches its end with the
ledger agreeing (each payment executed at most once, exact amounts), and a different client is still served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import GpoClient
from tests.conftest import Gpo
from tests.integration.test_api import (
    FAILED,
    REJECTED,
    SUCCEEDED,
    WAIT,
    all_payments,
    check_ledger,
    chunk_request,
    deadline,
    expect_error,
    header,
    new_program,
    payment,
    payments,
    raw_upload,
    watch_to_end,
)

CHUNK = 4  # payments per chunk in these uploads
ACCEPTED = res_pb.PAYMENT_STATUS_ACCEPTED
UPLOADING = res_pb.BATCH_STATE_UPLOADING


def upload_request(the_header: api_pb.BatchHeader) -> api_pb.UploadBatchRequest:
    return api_pb.UploadBatchRequest(header=the_header)


def numbered_chunks(start: int, count: int) -> list[list[api_pb.PaymentInput]]:
    """`count` chunks of CHUNK valid payments, numbered from `start`."""
    return [payments(start + CHUNK * n, CHUNK) for n in range(count)]


# ---- the table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """One bad payment, second in chunk 2: it alone is refused with `reason`; the rest goes on."""

    reason: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Scene:
    """What a stream scenario works with, and the batches it leaves to be followed to their end."""

    gpo: Gpo
    program: str
    client: GpoClient
    code: grpc.StatusCode
    reason: str | None
    to_settle: list[tuple[str, list[api_pb.PaymentInput]]] = field(default_factory=list)

    async def fails(self, call: Awaitable[Any]) -> None:
        """The case's own fault: the call must end with the case's status and reason."""
        await expect_error(call, self.code, self.reason)


@dataclass(frozen=True)
class Refused:
    """The whole stream is refused with `code` and ErrorInfo `reason` (None: gRPC's own, no details)."""

    code: grpc.StatusCode
    reason: str | None
    scenario: Callable[[Scene], Awaitable[None]]


def fa_of_length(length: int) -> str:
    """A well-formed address of exactly `length` characters (identifier 200, provider padded)."""
    head = "mobile:" + "2" * 200 + "@"
    return head + "p" * (length - len(head))


# ---- stream scenarios ------------------------------------------------------------------------------


async def empty_batch(scene: Scene) -> None:
    the_header = header(scene.program)
    responses: list[api_pb.UploadBatchResponse] = []
    await scene.fails(raw_upload(scene.client, [upload_request(the_header)], responses))
    # The header opened a batch; with no payments it stays open (and inert) for the same request_id.
    [opened] = responses
    held = await scene.client.get_batch(opened.batch.name)
    assert (held.state, held.payment_count, list(held.totals)) == (UPLOADING, 0, [])
    inputs = payments(1, 3)
    result = await deadline(scene.client.upload(the_header, [inputs]))
    assert result.batch.name == opened.batch.name
    scene.to_settle.append((opened.batch.name, inputs))


async def header_after_payments(scene: Scene) -> None:
    the_header = header(scene.program)
    first, second = numbered_chunks(1, 2)
    responses: list[api_pb.UploadBatchResponse] = []
    requests = [upload_request(the_header), chunk_request(1, first), upload_request(the_header)]
    await scene.fails(raw_upload(scene.client, requests, responses))
    assert [r.acknowledged_sequence for r in responses] == [0, 1]
    name = responses[0].batch.name
    await check_held(scene.client, name, first)
    result = await deadline(scene.client.upload(the_header, [second], first_sequence=2))
    assert (result.batch.name, result.batch.payment_count) == (name, 2 * CHUNK)
    scene.to_settle.append((name, first + second))


async def chunk_before_header(scene: Scene) -> None:
    responses: list[api_pb.UploadBatchResponse] = []
    await scene.fails(raw_upload(scene.client, [chunk_request(1, payments(1, CHUNK))], responses))
    assert responses == []
    await check_no_batch(scene.client, scene.program)


async def message_over_the_size_limit(scene: Scene) -> None:
    limit = scene.gpo.orchestrator.settings.max_message_bytes
    # This client may send far more than the server takes, so the limit enforced is the server's own.
    big_sender = GpoClient(scene.gpo.target, scene.gpo.token([scene.program]), max_message_bytes=4 * limit)
    try:
        the_header = header(scene.program)
        first, second, third = numbered_chunks(1, 3)
        huge = chunk_request(3, [*third[:-1], payment(12, note="x" * (limit + 1024))])
        assert huge.ByteSize() > limit
        responses: list[api_pb.UploadBatchResponse] = []
        requests = [upload_request(the_header), chunk_request(1, first), chunk_request(2, second), huge]
        await scene.fails(raw_upload(big_sender, requests, responses))
        assert [r.acknowledged_sequence for r in responses] == [0, 1, 2]
        name = responses[0].batch.name
    finally:
        await big_sender.close()
    # Nothing of the oversized message was stored; the acknowledged chunks stay, and the upload resumes.
    await check_held(scene.client, name, first + second)
    result = await deadline(scene.client.upload(the_header, [third], first_sequence=3))
    assert (result.batch.name, result.batch.payment_count) == (name, 3 * CHUNK)
    scene.to_settle.append((name, first + second + third))


async def stream_cut_mid_chunk(scene: Scene) -> None:
    """Chunk 2 is written and stored but its ack never read; the call is cancelled while a large chunk 3
    is on its way. Each chunk is stored whole or not at all, and resuming stores each exactly once."""
    the_header = header(scene.program)
    first, second = numbered_chunks(1, 2)
    large = payments(1 + 2 * CHUNK, 2000)
    call = scene.client.stub.UploadBatch(metadata=scene.client.metadata)
    async with asyncio.timeout(WAIT):
        await call.write(upload_request(the_header))
        name = (await call.read()).batch.name
        await call.write(chunk_request(1, first))
        assert (await call.read()).acknowledged_sequence == 1
        await call.write(chunk_request(2, second))
        while (await scene.client.get_batch(name)).last_chunk_sequence < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # until chunk 2 is stored (its ack stays unread)
        writing = asyncio.create_task(call.write(chunk_request(3, large)))
        await asyncio.sleep(0)  # let the large write start, then cut
    call.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    assert await call.code() == scene.code
    # Chunk 3 was committed or not, whole: the count is what the sequence says.
    held = await check_held(
        scene.client, name, [*first, *second, *large], whole=[0, CHUNK, 2 * CHUNK, 2 * CHUNK + len(large)]
    )
    assert held.last_chunk_sequence in (2, 3)
    # The resuming client sends everything again: what was stored is only acknowledged.
    acks: list[api_pb.UploadBatchResponse] = []
    result = await deadline(scene.client.upload(the_header, [first, second, large], on_ack=acks.append))
    assert result.batch.name == name
    assert (result.batch.payment_count, result.batch.last_chunk_sequence) == (2 * CHUNK + len(large), 3)
    assert [a.acknowledged_sequence for a in acks if a.acknowledged_sequence] == [1, 2, 3]
    assert not any(a.rejections for a in acks)  # no reference was refused as a duplicate of itself
    scene.to_settle.append((name, [*first, *second, *large]))


async def program_forbidden(scene: Scene) -> None:
    outsider = scene.gpo.client([new_program()])
    responses: list[api_pb.UploadBatchResponse] = []
    # Refused at the header, before any chunk is read (a chunk written after it would race the status).
    await scene.fails(raw_upload(outsider, [upload_request(header(scene.program))], responses))
    assert responses == []
    await check_no_batch(scene.client, scene.program)


async def header_with_control_characters(scene: Scene) -> None:
    """Header text that no payment check sees, sent by a caller allowed that very program."""
    for field_name, changes in (
        ("header.callback_uri", {"callback_uri": "https://example.org/cb\x00"}),
        ("header.program", {"program": f"{scene.program}\x00"}),
        ("header.program", {"program": f"{scene.program}\n"}),
    ):
        the_header = header(scene.program)
        for name, value in changes.items():
            setattr(the_header, name, value)
        caller = scene.gpo.client([the_header.program])
        _, violations = await expect_error(
            raw_upload(caller, [upload_request(the_header)], []), scene.code, scene.reason
        )
        assert [v.field for v in violations] == [field_name]
    await check_no_batch(scene.client, scene.program)


HOSTILE_PAYMENTS = [
    pytest.param(Rejected("rjct.amount.invalid", {"amount": "-1.00"}), id="amount-negative"),
    pytest.param(Rejected("rjct.amount.invalid", {"amount": "1e5"}), id="amount-exponent"),
    pytest.param(Rejected("rjct.amount.invalid", {"amount": "0.001"}), id="amount-three-decimals"),
    # Full-width digits "12.00": Python's \d and int() would take them, G2P Connect's pattern does not.
    pytest.param(
        Rejected("rjct.amount.invalid", {"amount": "\uff11\uff12.\uff10\uff10"}),
        id="amount-full-width-digits",
    ),
    pytest.param(Rejected("rjct.amount.invalid", {"amount": "12345678901234.00"}), id="amount-14-digits"),
    pytest.param(Rejected("rjct.amount.invalid", {"amount": ""}), id="amount-empty"),
    pytest.param(Rejected("rjct.amount.invalid", {"amount": "NaN"}), id="amount-nan"),
    pytest.param(Rejected("rjct.currency_code.invalid", {"currency_code": "kes"}), id="currency-lower"),
    pytest.param(Rejected("rjct.currency_code.invalid", {"currency_code": "XXX"}), id="currency-xxx"),
    pytest.param(Rejected("rjct.currency_code.invalid", {"currency_code": "KE"}), id="currency-short"),
    pytest.param(Rejected("rjct.payee_fa.invalid", {"payee_fa": ""}), id="fa-empty"),
    pytest.param(Rejected("rjct.payee_fa.invalid", {"payee_fa": fa_of_length(256)}), id="fa-256-chars"),
    pytest.param(Rejected("rjct.payee_fa.invalid", {"payee_fa": "mobile:2547\x0012@mpesa"}), id="fa-nul"),
    pytest.param(Rejected("rjct.payee_fa.invalid", {"payee_fa": "mobile:254712@mpesa\n"}), id="fa-newline"),
    pytest.param(Rejected("rjct.payer_fa.invalid", {"payer_fa": "account:1\x00@bank-a"}), id="payer-fa-nul"),
    pytest.param(Rejected("rjct.reference_id.duplicate", {"reference_id": "ref-00001"}), id="ref-duplicate"),
    pytest.param(Rejected("rjct.note.invalid", {"note": "n" * 100_000}), id="note-100k-chars"),
]
INVALID = grpc.StatusCode.INVALID_ARGUMENT
HOSTILE_STREAMS = [
    pytest.param(Refused(INVALID, "EMPTY_BATCH", empty_batch), id="empty-batch"),
    pytest.param(Refused(INVALID, "HEADER_REPEATED", header_after_payments), id="header-after-payments"),
    pytest.param(Refused(INVALID, "HEADER_MISSING", chunk_before_header), id="chunk-before-header"),
    # gRPC itself refuses the message before GPO's code sees it: no ErrorInfo to expect.
    pytest.param(
        Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, None, message_over_the_size_limit),
        id="message-over-size-limit",
    ),
    pytest.param(Refused(grpc.StatusCode.CANCELLED, None, stream_cut_mid_chunk), id="stream-cut-mid-chunk"),
    pytest.param(
        Refused(INVALID, "INVALID_HEADER", header_with_control_characters), id="header-control-characters"
    ),
    pytest.param(
        Refused(grpc.StatusCode.PERMISSION_DENIED, "PROGRAM_FORBIDDEN", program_forbidden),
        id="program-forbidden",
    ),
]


# ---- the suite -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE_PAYMENTS + HOSTILE_STREAMS)
async def test_hostile_input_gets_a_precise_answer_and_harms_nothing(
    gpo: Gpo, case: Rejected | Refused
) -> None:
    program = new_program()
    client = gpo.client([program])
    if isinstance(case, Rejected):
        to_settle = [await one_bad_payment(client, program, case)]
    else:
        scene = Scene(gpo, program, client, case.code, case.reason)
        await case.scenario(scene)
        to_settle = scene.to_settle
    stored = [p for name, inputs in to_settle for p in await settle(client, name, inputs)]
    if isinstance(case, Rejected):  # the report names the one bad payment, and only it
        bad_reference = case.fields.get("reference_id", "hostile")
        assert [(p.reference_id, p.reason_code) for p in stored if p.status == REJECTED] == [
            (bad_reference, case.reason)
        ]
    # The server still serves another client, of another program, from upload to the rail and back.
    other_program = new_program()
    other = gpo.client([other_program])
    inputs = payments(900, 5)
    result = await deadline(other.upload(header(other_program), [inputs[:3], inputs[3:]]))
    stored += await settle(other, result.batch.name, inputs)
    check_ledger(gpo, stored)


async def one_bad_payment(
    client: GpoClient, program: str, case: Rejected
) -> tuple[str, list[api_pb.PaymentInput]]:
    first = payments(1, CHUNK)
    bad = payment(6, **{"reference_id": "hostile", **case.fields})
    second = [payment(5), bad, payment(7), payment(8)]
    responses: list[api_pb.UploadBatchResponse] = []
    requests = [upload_request(header(program)), chunk_request(1, first), chunk_request(2, second)]
    await deadline(raw_upload(client, requests, responses))
    opened, ack1, ack2, final = responses
    assert (ack1.acknowledged_sequence, list(ack1.rejections)) == (1, [])
    assert ack2.acknowledged_sequence == 2
    assert [(r.reference_id, r.index, r.reason_code) for r in ack2.rejections] == [
        (bad.reference_id[:128], 1, case.reason)
    ]
    assert ack2.rejections[0].message
    assert (final.batch.name, final.batch.payment_count) == (opened.batch.name, 2 * CHUNK)
    return opened.batch.name, first + second


async def settle(client: GpoClient, name: str, inputs: list[api_pb.PaymentInput]) -> list[res_pb.Payment]:
    """Follows the batch to COMPLETED and checks every payment against what was sent: the valid ones
    executed with their exact amounts, the invalid ones rejected, none lost, none added."""
    batch = await watch_to_end(client, name)
    assert batch.state == res_pb.BATCH_STATE_COMPLETED
    assert batch.payment_count == len(inputs)
    stored = await all_payments(client, name)
    assert [p.reference_id for p in stored] == [p.reference_id[:256] for p in inputs]
    for sent, p in zip(inputs, stored, strict=True):
        if p.status == REJECTED:
            assert p.reason_code.startswith("rjct.") and p.reason_message and p.rail == ""
            # The report keeps a bounded copy of what was sent; NUL, which PostgreSQL cannot store, as U+FFFD.
            assert p.payee_fa == sent.payee_fa[:512].replace("\x00", "\ufffd")
            assert p.note == sent.note[:2048]
        else:
            assert p.status in (SUCCEEDED, FAILED), p
            assert (Decimal(p.amount), p.currency_code, p.payee_fa) == (
                Decimal(sent.amount),
                sent.currency_code,
                sent.payee_fa,
            )
    return stored


async def check_held(
    client: GpoClient, name: str, inputs: list[api_pb.PaymentInput], whole: list[int] | None = None
) -> res_pb.Batch:
    """An interrupted upload holds a prefix of `inputs`, intact, with nothing dispatched: all of them, or
    when `whole` is given (the payment count after each chunk) the prefix of any whole number of chunks.

    A commit of the cut stream may still land meanwhile, so the payments are read between two equal reads
    of the batch (a batch only grows, so nothing changed in between)."""
    async with asyncio.timeout(WAIT):
        while True:
            before = await client.get_batch(name)
            stored = await all_payments(client, name)
            if before == await client.get_batch(name):
                break
    assert before.state == UPLOADING
    if whole is None:
        assert before.payment_count == len(inputs)
    else:
        assert before.payment_count == whole[before.last_chunk_sequence]
    assert [(p.reference_id, Decimal(p.amount), p.currency_code) for p in stored] == [
        (p.reference_id, Decimal(p.amount), p.currency_code) for p in inputs[: before.payment_count]
    ]
    assert {p.status for p in stored} <= {ACCEPTED}
    return before


async def check_no_batch(client: GpoClient, program: str) -> None:
    listed = await client.stub.ListBatches(
        api_pb.ListBatchesRequest(program=program), metadata=client.metadata
    )
    assert list(listed.batches) == []
