"""Bounded money (issue 12, item 1), on both backends: no batch can carry more than GPO's maximum, so no
sum it keeps or computes can leave the 64-bit range.

Before the bound, two chunks of 5,000 payments of 9999999999999.99 (each valid) were all paid, the client
got INTERNAL, the stored total became a float on SQLite, and every later GetBatch, WatchBatch and
ListBatches of the batch failed.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import chunked
from gpo_server.domain.money import MAX_BATCH_TOTAL_HUNDREDTHS, InvalidAmount, format_amount, parse_total
from tests.conftest import Gpo
from tests.integration.test_api import (
    PAYER,
    REJECTED,
    SUCCEEDED,
    all_payments,
    check_ledger,
    deadline,
    expect_error,
    header,
    new_program,
    raw_upload,
    watch_to_end,
)

LARGEST = "9999999999999.99"  # the largest amount one payment may have
FITS = MAX_BATCH_TOTAL_HUNDREDTHS // 999_999_999_999_999  # how many of them one batch can carry: 100


def largest(i: int) -> api_pb.PaymentInput:
    return api_pb.PaymentInput(
        reference_id=f"big-{i:05d}", payee_fa=f"mobile:2547{i:08d}@mpesa", amount=LARGEST, currency_code="KES"
    )


async def test_a_batch_cannot_pass_the_maximum_total(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    sent = [largest(i) for i in range(10_000)]
    uploaded = await deadline(client.upload(header(program), chunked(sent, 5_000)))

    # The first FITS payments fit; every later one is refused, before anything is stored or paid.
    assert FITS == 100
    assert uploaded.rejected == len(sent) - FITS
    assert {r.reason_code for r in uploaded.rejections} == {"rjct.amount.invalid"}
    assert "the most one batch may carry" in uploaded.rejections[0].message
    assert [r.reference_id for r in uploaded.rejections[:2]] == ["big-00100", "big-00101"]

    final = await watch_to_end(client, uploaded.batch.name)
    assert final.state == res_pb.BATCH_STATE_COMPLETED
    again = await client.get_batch(uploaded.batch.name)  # read again: the stored totals are exact integers
    listed = [b async for b in client.batches(program)]
    assert [b.name for b in listed] == [again.name]
    for batch in (final, again, listed[0]):
        by_status = {(t.status, t.currency_code): (t.count, Decimal(t.amount)) for t in batch.totals}
        settled = sum(count for (status, _), (count, _) in by_status.items() if status != REJECTED)
        assert settled == FITS
        assert sum(amount for _, amount in by_status.values()) == FITS * Decimal(LARGEST)
        assert by_status[(REJECTED, "KES")] == (len(sent) - FITS, Decimal(0))  # refused: kept out of sums
    stored = await all_payments(client, uploaded.batch.name)
    assert len(stored) == len(sent)
    assert {p.status for p in stored[:FITS]} <= {SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED}
    check_ledger(gpo, stored)


async def test_a_declared_total_above_the_maximum_is_refused(gpo: Gpo) -> None:
    program = new_program()
    client = gpo.client([program])
    too_much = format_amount(MAX_BATCH_TOTAL_HUNDREDTHS + 1)
    request = api_pb.UploadBatchRequest(
        header=api_pb.BatchHeader(
            program=program, request_id=str(uuid.uuid4()), payer_fa=PAYER, expected_total_amount=too_much
        )
    )
    info, _ = await expect_error(
        raw_upload(client, [request]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_HEADER"
    )
    assert info is not None


def test_declared_totals_are_parsed_up_to_the_maximum() -> None:
    assert parse_total(format_amount(MAX_BATCH_TOTAL_HUNDREDTHS)) == MAX_BATCH_TOTAL_HUNDREDTHS
    with pytest.raises(InvalidAmount):
        parse_total(format_amount(MAX_BATCH_TOTAL_HUNDREDTHS + 1))
    with pytest.raises(InvalidAmount):
        parse_total("9" * 19)  # would not even fit a BIGINT in hundredths
