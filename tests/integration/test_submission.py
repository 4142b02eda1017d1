"""The submission service on a real store (SQLite and PostgreSQL): rejections decided before intake, and
what finishing an upload tells. UploadBatch and G2P Connect both submit through it; their own suites
cover the protocols."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb

from gpo_server.domain.routing import Router
from gpo_server.intake import Intake
from gpo_server.storage.store import NewBatch, Store
from gpo_server.submission import Finished, Problem, Refused, Submissions
from tests.support.databases import migrated_store

RAIL = "simulator"
PAYER = "account:treasury@cb"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with migrated_store(request.param, tmp_path) as s:
        yield s


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def new_batch(expected_count: int = 0, expected_total: int | None = None) -> NewBatch:
    return NewBatch("submission", str(uuid.uuid4()), PAYER, "", None, expected_count, expected_total)


def payment(ref: str, amount: str, payee: str = "mobile:254700000001@mpesa") -> api_pb.PaymentInput:
    return api_pb.PaymentInput(reference_id=ref, payee_fa=payee, amount=amount, currency_code="KES")


async def test_rejections_decided_beforehand_are_stored_with_their_reasons_and_as_sent(store: Store) -> None:
    wakes = Wakes()
    submissions = Submissions(store, Intake(store, Router((), RAIL)), wakes)
    batch = await submissions.open(new_batch())
    chunk = api_pb.PaymentChunk(
        sequence=1,
        payments=[
            payment("ok", "10.00"),
            payment("unresolved", "12.50", payee="token:77@nid"),
            payment("zero", "0.00"),
        ],
    )
    decided = {
        1: ("rjct.payee_fa.not_resolved", "the mapper did not resolve it"),
        2: ("rjct.locale.invalid", "x"),
    }
    outcome = await submissions.upload(batch).add(chunk, rejected=decided)
    assert outcome is not None
    assert [(r.index, r.reason_code, r.message) for r in outcome.rejections] == [
        (1, "rjct.payee_fa.not_resolved", "the mapper did not resolve it"),
        (2, "rjct.locale.invalid", "x"),
    ]
    finish = await submissions.finish(batch)
    assert finish.outcome is Finished.COMPLETED and wakes.count == 1
    rows = await store.list_payments(batch.id, after_number=0, limit=10)
    assert [
        (r.reference_id, r.status, r.reason_code, r.payee_fa, r.amount_hundredths, r.rail) for r in rows
    ] == [
        ("ok", "accepted", "", "mobile:254700000001@mpesa", 1000, RAIL),
        # The payee as it was sent; a well-formed amount kept, one GPO's own rules refuse left out.
        ("unresolved", "rejected", "rjct.payee_fa.not_resolved", "token:77@nid", 1250, None),
        ("zero", "rejected", "rjct.locale.invalid", "mobile:254700000001@mpesa", None, None),
    ]
    assert finish.batch.received_total_hundredths == 2250


async def test_finishing_tells_completed_held_mismatch_or_empty(store: Store) -> None:
    wakes = Wakes()
    submissions = Submissions(store, Intake(store, Router((), RAIL)), wakes)

    empty = await submissions.open(new_batch())
    assert (await submissions.finish(empty)).outcome is Finished.EMPTY

    held = await submissions.open(new_batch(expected_count=2))
    await submissions.upload(held).add(api_pb.PaymentChunk(sequence=1, payments=[payment("a", "1.00")]))
    assert (await submissions.finish(held)).outcome is Finished.HELD

    mismatch = await submissions.open(new_batch(expected_count=1, expected_total=500))
    await submissions.upload(mismatch).add(api_pb.PaymentChunk(sequence=1, payments=[payment("a", "6.00")]))
    finish = await submissions.finish(mismatch)
    assert finish.outcome is Finished.MISMATCH and finish.batch.received_total_hundredths == 600
    assert wakes.count == 0  # nothing of these is dispatched

    resumed = submissions.upload(await submissions.open(held_header := new_batch(expected_count=1)))
    assert await resumed.add(api_pb.PaymentChunk(sequence=1, payments=[payment("b", "2.00")])) is not None
    again = submissions.upload(await submissions.open(held_header))
    assert await again.prepare(api_pb.PaymentChunk(sequence=1)) is None  # stored already: acknowledge only
    with pytest.raises(Refused) as gap:
        await again.prepare(api_pb.PaymentChunk(sequence=3))
    assert (gap.value.problem, gap.value.reason, gap.value.details) == (
        Problem.PRECONDITION,
        "CHUNK_OUT_OF_ORDER",
        {"expected_sequence": "2"},
    )
    finished = await submissions.finish(again.batch)
    assert finished.outcome is Finished.COMPLETED and wakes.count == 1

    with pytest.raises(Refused) as reused:
        await submissions.open(
            NewBatch("submission", held_header.request_id, PAYER, "", None, 2, None)  # another header
        )
    assert (reused.value.problem, reused.value.reason) == (Problem.CONFLICT, "REQUEST_ID_REUSED")
