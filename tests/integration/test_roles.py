"""Least privilege (issue 12, item 2), on both backends.

Found on 6605833 with the token `gpo token --sidecar` minted (every program plus the sidecar role): it
uploaded a batch, read another program's payees, listed dead letters, and through RailService claimed a
payment scheduled for tomorrow and reported it SUCCEEDED with a made-up reference; the batch went COMPLETED.
Now the kinds of caller are disjoint, a sidecar serves only its rails, nothing is claimed before its time,
and an outcome counts only from the claim that holds the payment.
"""

from __future__ import annotations

import uuid

import grpc
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2, rail_pb2_grpc
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.domain.states import PaymentStatus
from gpo_server.storage.store import ResultUpdate, Store
from tests.conftest import Gpo
from tests.integration.test_api import (
    _in_one_hour,
    all_payments,
    deadline,
    expect_error,
    header,
    new_program,
    payments,
    raw_upload,
    watch_to_end,
)
from tests.integration.test_operations import _batch_with_payments, _payment, store  # noqa: F401

ACCEPTED = res_pb.PAYMENT_STATUS_ACCEPTED


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def test_a_sidecar_token_may_call_the_rail_service_only(gpo: Gpo) -> None:
    program = new_program()
    owner = gpo.client([program])
    uploaded = await deadline(owner.upload(header(program, schedule_time=_in_one_hour()), [payments(1, 3)]))
    sidecar = gpo.client([], ["sidecar"])
    calls = [
        sidecar.get_batch(uploaded.batch.name),
        anext(sidecar.payments(uploaded.batch.name)),
        anext(sidecar.batches()),
        anext(sidecar.dead_letters()),
        sidecar.cancel(uploaded.batch.name),
        raw_upload(sidecar, [api_pb.UploadBatchRequest(header=header(program))]),
        anext(sidecar.watch(uploaded.batch.name)),
    ]
    for call in calls:
        await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, "SIDECAR_NOT_ALLOWED")
    assert {p.status for p in await all_payments(owner, uploaded.batch.name)} == {ACCEPTED}


async def test_operators_read_everything_and_retry_but_never_upload(gpo: Gpo) -> None:
    program = new_program()
    owner = gpo.client([program])
    uploaded = await deadline(owner.upload(header(program), [payments(1, 5)]))
    await watch_to_end(owner, uploaded.batch.name)
    operator = gpo.client([], ["operator"])
    assert (await operator.get_batch(uploaded.batch.name)).name == uploaded.batch.name
    assert [b.name async for b in operator.batches(program)] == [uploaded.batch.name]
    # This run's rail: PostgreSQL is shared, and other tests record dead letters of their own rails there.
    assert [d async for d in operator.dead_letters(gpo.rail)] == []
    # Rail statistics (operators only). This run's rail settled the batch just now,
    # before anything of it is retried.
    stats = await operator.stub.ListRailStats(api_pb.ListRailStatsRequest(), metadata=operator.metadata)
    (mine,) = [r for r in stats.rail_stats if r.rail == gpo.rail]
    assert stats.window_seconds == 300 and mine.succeeded_count + mine.failed_count >= 5
    assert mine.failed_count == sum(r.count for r in mine.failure_reasons)
    await expect_error(
        operator.stub.ListRailStats(
            api_pb.ListRailStatsRequest(window_seconds=86401), metadata=operator.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_WINDOW",
    )
    await operator.retry_failed(uploaded.batch.name, str(uuid.uuid4()))
    await expect_error(
        raw_upload(operator, [api_pb.UploadBatchRequest(header=header(program))]),
        grpc.StatusCode.PERMISSION_DENIED,
        "OPERATORS_DO_NOT_UPLOAD",
    )
    # A program caller, even one allowed every program, is not an operator.
    everyone = gpo.client(["*"])
    await expect_error(
        everyone.retry_failed(uploaded.batch.name, str(uuid.uuid4())), grpc.StatusCode.PERMISSION_DENIED
    )
    await expect_error(anext(everyone.dead_letters()), grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_ONLY")
    # Rail statistics span every program: operators only.
    await expect_error(
        everyone.stub.ListRailStats(api_pb.ListRailStatsRequest(), metadata=everyone.metadata),
        grpc.StatusCode.PERMISSION_DENIED,
        "OPERATOR_ONLY",
    )


async def test_a_sidecar_claims_only_its_rails_and_nothing_before_its_time(gpo: Gpo) -> None:
    program = new_program()
    owner = gpo.client([program])
    uploaded = await deadline(owner.upload(header(program, schedule_time=_in_one_hour()), [payments(1, 3)]))
    claim = rail_pb2.ClaimWorkChunkRequest(
        chunk_id=str(uuid.uuid4()), batch=uploaded.batch.name, payment_numbers=[1, 2, 3], claim_id="x:1"
    )
    async with grpc.aio.insecure_channel(gpo.target) as channel:
        stub = rail_pb2_grpc.RailServiceStub(channel)
        other_rail_token = gpo.token_for_rails(["some-other-rail"])
        await expect_error(
            stub.ClaimWorkChunk(claim, metadata=metadata(other_rail_token)),
            grpc.StatusCode.PERMISSION_DENIED,
            "RAIL_FORBIDDEN",
        )
        # The batch's own rail may claim, but not before the payments are due.
        early = await deadline(stub.ClaimWorkChunk(claim, metadata=metadata(gpo.token_for_rails([gpo.rail]))))
        assert {d.action for d in early.decisions} == {rail_pb2.CLAIM_ACTION_BUSY}
        assert early.retry_after.ToTimedelta().total_seconds() > 30 * 60
        # A made-up outcome without the claim that holds the payment changes nothing.
        report = stub.ReportResults(metadata=metadata(gpo.token_for_rails([gpo.rail])))
        await report.write(
            rail_pb2.ReportResultsRequest(
                chunk_id=claim.chunk_id,
                batch=uploaded.batch.name,
                claim_id="x:1",
                lease_token=early.lease_token or 12345,
                results=[
                    rail_pb2.PaymentResult(
                        payment_number=1, outcome=rail_pb2.RAIL_OUTCOME_SUCCEEDED, rail_reference="made-up"
                    )
                ],
            )
        )
        answer = await deadline(report.read())
        assert answer.applied_count == 0
        await report.done_writing()
    stored = await all_payments(owner, uploaded.batch.name)
    assert {p.status for p in stored} == {ACCEPTED}
    assert "made-up" not in {p.rail_reference for p in stored}
    assert (await owner.get_batch(uploaded.batch.name)).state == res_pb.BATCH_STATE_PROCESSING


async def test_an_outcome_counts_only_from_the_claim_holding_the_payment(store: Store) -> None:  # noqa: F811
    batch_id = await _batch_with_payments(store, 2)
    held = await store.claim(batch_id, [1, 2], "holder:chunk", lease_s=30)
    assert held.execute == {1, 2}
    forged = ResultUpdate(1, PaymentStatus.SUCCEEDED, "", "", "made-up", True)
    # Another claim's id, a wrong token, or no claim at all: refused, the payment stays the holder's.
    for owner, token in (("intruder:chunk", 7), ("holder:chunk", held.lease_token + 1), ("", 0)):
        refused: list[int] = []
        applied = await store.apply_results(batch_id, [forged], owner=owner, token=token, refused=refused)
        assert applied == 0
        row = await _payment(store, batch_id, 1)
        assert (row.status, row.lease_token, row.rail_reference) == ("sent", held.lease_token, "")
    # A sidecar of another rail cannot settle it even with the right token.
    applied = await store.apply_results(
        batch_id, [forged], owner="holder:chunk", token=held.lease_token, rails=frozenset({"other"})
    )
    assert applied == 0
    genuine = ResultUpdate(1, PaymentStatus.SUCCEEDED, "", "", "rail-ref-1", True)
    assert await store.apply_results(batch_id, [genuine], owner="holder:chunk", token=held.lease_token) == 1
    assert (await _payment(store, batch_id, 1)).status == "succeeded"
