"""Payment history (issue 16, item 4): every status change of a payment, with its time and cause, read
through ListStatusChanges, on both backends. The rows are written by a database trigger, so the test runs
real batches (upload, dispatch, rail outcomes, an operator retry) and reads what they left."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.auth import OPERATOR_ROLE
from gpo_server.client import GpoClient, chunked, status_counts
from gpo_server.demo import synthetic_payments
from tests.conftest import Gpo

PROGRAM = "history"
UNSPECIFIED = res_pb.PAYMENT_STATUS_UNSPECIFIED
ACCEPTED, QUEUED, SENT = (
    res_pb.PAYMENT_STATUS_ACCEPTED,
    res_pb.PAYMENT_STATUS_QUEUED,
    res_pb.PAYMENT_STATUS_SENT,
)
SUCCEEDED, FAILED = res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED
REJECTED = res_pb.PAYMENT_STATUS_REJECTED

# The cause each change may carry, by the status it reaches.
CAUSES = {
    QUEUED: {"dispatch"},
    SENT: {"claim"},
    SUCCEEDED: {"rail"},
    FAILED: {"rail"},
    ACCEPTED: {"retry"},
}


async def wait_final(client: GpoClient, name: str, timeout_s: float = 60) -> res_pb.Batch:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await client.get_batch(name)
        if batch.state == res_pb.BATCH_STATE_COMPLETED and not {"accepted", "queued", "sent"} & set(
            status_counts(batch)
        ):
            return batch
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not complete in {timeout_s}s")


async def history(client: GpoClient, payment: str, page_size: int = 100) -> list[res_pb.StatusChange]:
    return [c async for c in client.status_changes(payment, page_size)]


def assert_consistent(changes: list[res_pb.StatusChange], payment: res_pb.Payment) -> None:
    """The history is one chain from the upload to the payment's status now, in time order."""
    upload, rest = changes[0], changes[1:]
    assert (upload.previous_status, upload.cause) == (UNSPECIFIED, "upload")
    status = upload.status
    for change in rest:
        assert change.previous_status == status, changes
        assert change.cause in CAUSES[change.status], change
        status = change.status
    assert status == payment.status
    times = [c.change_time.ToDatetime() for c in changes]
    assert times == sorted(times)
    assert changes[-1].change_time == payment.update_time


async def test_each_status_change_is_listed_with_its_time_and_cause(gpo: Gpo) -> None:
    client = gpo.client([PROGRAM])
    operator = gpo.client([], [OPERATOR_ROLE], subject="history-operator")
    header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa="account:treasury@cb")
    # Every 10th payment is invalid (rejected at upload); the simulator fails about 20% of the rest.
    uploaded = await client.upload(header, chunked(synthetic_payments(60, 10), 25))
    name = uploaded.batch.name
    await wait_final(client, name)
    failed_first = {p.name for p in [p async for p in client.payments(name, "status = FAILED")]}
    assert failed_first
    await operator.retry_failed(name, str(uuid.uuid4()))
    await wait_final(client, name)

    payments = [p async for p in client.payments(name)]
    for payment in payments:
        changes = await history(client, payment.name)
        assert_consistent(changes, payment)
        statuses = [c.status for c in changes]
        if payment.status == REJECTED:
            assert len(changes) == 1 and changes[0].reason_code == payment.reason_code != ""
            continue
        assert statuses[0] == ACCEPTED and SENT in statuses
        executed = [c for c in changes if c.cause == "rail"]
        assert executed[-1].attempts >= 1
        assert executed[-1].reason_code == payment.reason_code
        if payment.name in failed_first:
            # Failed, retried by the operator (back to ACCEPTED), then executed again.
            retried = [i for i, c in enumerate(changes) if c.cause == "retry"]
            assert len(retried) == 1 and changes[retried[0]].previous_status == FAILED
            assert len(executed) == 2 and changes[retried[0] - 1] == executed[0]
        else:
            assert "retry" not in {c.cause for c in changes} and len(executed) == 1

    # Paging: one entry a page gives the same history.
    retried_payment = next(p for p in payments if p.name in failed_first)
    assert await history(client, retried_payment.name, page_size=1) == await history(
        client, retried_payment.name
    )


async def test_a_payment_history_is_refused_for_bad_unknown_or_foreign_names(gpo: Gpo) -> None:
    client = gpo.client([PROGRAM])
    header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa="account:treasury@cb")
    uploaded = await client.upload(header, chunked(synthetic_payments(3, 0), 3))
    name = uploaded.batch.name
    stranger = gpo.client(["another-program"])
    cases = [
        (client, f"{name}/payments/no-such-reference", grpc.StatusCode.NOT_FOUND),
        (client, f"batches/{uuid.uuid4()}/payments/demo-000000001", grpc.StatusCode.NOT_FOUND),
        (stranger, f"{name}/payments/demo-000000001", grpc.StatusCode.NOT_FOUND),
        (client, name, grpc.StatusCode.INVALID_ARGUMENT),
        (client, "batches/not-a-uuid/payments/demo-000000001", grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for caller, payment, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await history(caller, payment)
        assert refused.value.code() == code, payment
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.stub.ListStatusChanges(
            api_pb.ListStatusChangesRequest(parent=f"{name}/payments/demo-000000001", page_token="forged"),
            metadata=client.metadata,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
