"""Operator and safety mechanisms on a real in-process orchestrator (embedded, and PostgreSQL where
the mechanism differs there): retrying failed payments, unreachable rails, claim leases, the
stuck-payment sweeper, and dead letters. Rails are injected (dramatiq/httpx style), never patched."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel.queueing.base import OutgoingMessage
from gpo_server.api.auth import OPERATOR_ROLE, mint_token
from gpo_server.app import Orchestrator
from gpo_server.client import GpoClient, chunked, status_counts
from gpo_server.config import Settings
from gpo_server.demo import synthetic_payments
from gpo_server.domain.states import PaymentStatus
from gpo_server.storage.store import NewBatch, ResultUpdate, Store
from rail_sidecars.rails.base import Rail, RailPayment, RailResult, RetryableRailError
from rail_sidecars.rails.simulator import SimulatorRail, SimulatorSettings
from rail_sidecars.rails.simulator.store import read_totals
from tests.support.databases import migrated_store

PROGRAM = "ops"
RAIL = "simulator"


class Running:
    def __init__(self, orchestrator: Orchestrator, secret: bytes, ledger: Path) -> None:
        self.orchestrator = orchestrator
        self.ledger = ledger
        self.client = GpoClient(f"127.0.0.1:{orchestrator.port}", mint_token(secret, "ops-test", ["*"]))
        # Retries and dead letters are the operator's (issue 12): a program caller is refused them.
        self.operator = GpoClient(
            f"127.0.0.1:{orchestrator.port}", mint_token(secret, "ops-operator", [], [OPERATOR_ROLE])
        )

    async def close(self) -> None:
        await self.client.close()
        await self.operator.close()


async def start(tmp_path: Path, rail: Rail | None = None, **overrides: object) -> Running:
    secret = secrets.token_bytes(32)
    ledger = tmp_path / "ledger.db"
    settings = Settings(
        **{
            "data_dir": tmp_path,
            "listen": "127.0.0.1:0",
            "auth_hs256_secrets": [secret],
            "simulator": "failure_rate=0.2,seed=11",
            **overrides,
        }  # type: ignore[arg-type]
    )
    rails: Mapping[str, Rail] = (
        {RAIL: rail}
        if rail is not None
        else {RAIL: SimulatorRail(SimulatorSettings(ledger_path=str(ledger), failure_rate=0.2, seed=11))}
    )
    orchestrator = Orchestrator(settings, embedded_rails=rails)
    await orchestrator.start()
    return Running(orchestrator, secret, ledger)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    gpo = await start(tmp_path)
    yield gpo
    await gpo.close()
    await gpo.orchestrator.stop(grace_s=2)


async def upload(client: GpoClient, count: int) -> str:
    header = api_pb.BatchHeader(program=PROGRAM, request_id=str(uuid.uuid4()), payer_fa="account:treasury@cb")
    result = await client.upload(header, chunked(synthetic_payments(count, 0), 100))
    return str(result.batch.name)


async def wait_state(client: GpoClient, name: str, state: int, timeout_s: float = 60) -> res_pb.Batch:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await client.get_batch(name)
        if batch.state == state and not {"accepted", "queued", "sent"} & set(status_counts(batch)):
            return batch
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} not in state {state} after {timeout_s}s: {batch}")


async def payments_of(client: GpoClient, name: str, status_filter: str = "") -> list[res_pb.Payment]:
    return [p async for p in client.payments(name, status_filter)]


# ---- operator retry ---------------------------------------------------------------------------


async def test_retry_failed_gives_refused_payments_new_keys_once_per_request_id(running: Running) -> None:
    client = running.client
    name = await upload(client, 400)
    await wait_state(client, name, res_pb.BATCH_STATE_COMPLETED)
    failed_before = {p.reference_id: p for p in await payments_of(client, name, "status = FAILED")}
    assert 30 < len(failed_before) < 130  # the simulator fails about 20% by key

    request_id = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await client.retry_failed(name, request_id)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # a program caller may not retry
    await running.operator.retry_failed(name, request_id)
    batch = await wait_state(client, name, res_pb.BATCH_STATE_COMPLETED)
    await running.operator.retry_failed(name, request_id)  # the same request_id: no second retry
    await asyncio.sleep(0.5)

    after = {p.reference_id: p for p in await payments_of(client, name)}
    for ref, before in failed_before.items():
        retried = after[ref]
        assert retried.retries == 1
        assert retried.idempotency_key != before.idempotency_key  # refused for good: a new key
        assert retried.status in (res_pb.PAYMENT_STATUS_SUCCEEDED, res_pb.PAYMENT_STATUS_FAILED)
    assert any(after[ref].status == res_pb.PAYMENT_STATUS_SUCCEEDED for ref in failed_before)
    assert all(p.retries == 0 for ref, p in after.items() if ref not in failed_before)

    totals = read_totals(running.ledger)
    counts = status_counts(await client.get_batch(name))
    assert totals.duplicates == 0
    assert totals.payments == counts["succeeded"]
    succeeded = sum(
        int(t.amount.replace(".", "")) for t in batch.totals if t.status == res_pb.PAYMENT_STATUS_SUCCEEDED
    )
    assert int(totals.amount.replace(".", "")) == succeeded


class UnreachableRail(Rail):
    """Every call fails as a rail outage would; it never executes anything."""

    name = "unreachable"

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        self.calls += 1
        raise RetryableRailError("503 from the rail")

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        return {}


async def test_an_unreachable_rail_fails_payments_that_keep_their_keys_on_retry(tmp_path: Path) -> None:
    rail = UnreachableRail()
    gpo = await start(tmp_path, rail)
    try:
        name = await upload(gpo.client, 20)
        await wait_state(gpo.client, name, res_pb.BATCH_STATE_COMPLETED)
        failed = await payments_of(gpo.client, name)
        assert {p.status for p in failed} == {res_pb.PAYMENT_STATUS_FAILED}
        assert {p.reason_code for p in failed} == {"rjct.rail.unreachable"}
        assert rail.calls >= 5  # retried with backoff before giving up
        keys = {p.reference_id: p.idempotency_key for p in failed}
        await gpo.operator.retry_failed(name, str(uuid.uuid4()))
        await wait_state(gpo.client, name, res_pb.BATCH_STATE_COMPLETED)
        again = await payments_of(gpo.client, name)
        assert {p.reference_id: p.idempotency_key for p in again} == keys  # the rail may still hold them
        assert {p.retries for p in again} == {1}
    finally:
        await gpo.close()
        await gpo.orchestrator.stop(grace_s=2)


# ---- claim leases -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with migrated_store(request.param, tmp_path) as s:
        yield s


async def _batch_with_payments(store: Store, count: int) -> int:
    from gpo.v1 import disbursement_service_pb2

    from gpo_server.domain.routing import Router
    from gpo_server.intake import Intake

    batch, _ = await store.create_or_get_batch(
        NewBatch("leases", str(uuid.uuid4()), "account:treasury@cb", "", None, 0, None)
    )
    chunk = disbursement_service_pb2.PaymentChunk(sequence=1, payments=list(synthetic_payments(count, 0)))
    await Intake(store, Router((), RAIL)).store_chunk(batch.id, chunk)
    return batch.id


async def test_a_claim_lease_keeps_a_concurrent_delivery_away_until_it_ends(store: Store) -> None:
    batch_id = await _batch_with_payments(store, 10)
    numbers = list(range(1, 11))
    first = await store.claim(batch_id, numbers, "sidecar-a:chunk-1", lease_s=30)
    assert first.execute == set(numbers) and not first.verify and not first.busy

    other = await store.claim(batch_id, numbers, "sidecar-b:chunk-1", lease_s=30)
    assert other.busy == set(numbers) and not other.execute and not other.verify
    assert dt.timedelta(seconds=25) < other.retry_after <= dt.timedelta(seconds=30)

    again = await store.claim(batch_id, numbers, "sidecar-a:chunk-1", lease_s=30)
    assert again.verify == set(numbers)  # the same process retrying its own chunk verifies at once

    # The owner gives up without an outcome: the lease ends and another delivery may verify.
    await store.apply_results(batch_id, [], owner="sidecar-a:chunk-1", released=numbers[:5])
    later = await store.claim(batch_id, numbers, "sidecar-b:chunk-1", lease_s=0.5)
    assert later.verify == set(numbers[:5]) and later.busy == set(numbers[5:])

    await asyncio.sleep(0.6)  # a short lease ends by itself
    last = await store.claim(batch_id, numbers[:5], "sidecar-c:chunk-1", lease_s=30)
    assert last.verify == set(numbers[:5])


async def _until(condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not await condition():
        assert time.monotonic() < deadline, f"{what} within {deadline_s}s"
        await asyncio.sleep(0.05)


async def _payment(store: Store, batch_id: int, number: int) -> Any:
    from sqlalchemy import select

    from gpo_server.storage.tables import payments

    async with store.engine.connect() as conn:
        query = select(payments).where(payments.c.batch_id == batch_id, payments.c.number == number)
        return (await conn.execute(query)).one()


async def test_heartbeats_keep_a_lease_and_a_stale_claim_is_fenced_out(store: Store) -> None:
    batch_id = await _batch_with_payments(store, 4)
    numbers = [1, 2, 3, 4]
    first = await store.claim(batch_id, numbers, "a:chunk", lease_s=0.3, max_call_s=0.3)
    assert first.execute == set(numbers) and first.lease_token

    # Renewed past its first lease and in-flight window: still the holder's.
    for _ in range(4):
        renewed_at = time.monotonic()  # before the renewal: its lease ends 0.3 s after a later instant
        assert await store.renew(batch_id, numbers, "a:chunk", first.lease_token, 0.3) is not None
        await asyncio.sleep(0.2)
    assert (await store.claim(batch_id, numbers, "b:chunk", lease_s=30)).busy == set(numbers)

    # Heartbeats stop: BUSY until the lease AND the rail's longest call have passed, then VERIFY.
    second: list[Any] = []

    async def taken_over() -> bool:
        claim = await store.claim(batch_id, numbers, "b:chunk", lease_s=30, max_call_s=30)
        second.append(claim)
        return claim.verify == set(numbers)

    await _until(taken_over, 10, "the lapsed holder's payments verified by another claim")
    # Not before the last renewal's lease (0.3 s) and in-flight window (0.3 s more) closed. Measured from
    # the renewal, not from the first poll: on a busy machine the BUSY claim above can take most of that.
    assert time.monotonic() - renewed_at >= 0.6
    token = second[-1].lease_token
    assert token != first.lease_token

    # The stale holder can no longer renew, nor make statements only a holder can make.
    assert await store.renew(batch_id, numbers, "a:chunk", first.lease_token, 0.3) is None
    refused: list[int] = []
    unreachable = ResultUpdate(1, PaymentStatus.FAILED, "rjct.rail.unreachable", "", "", False)
    paid = ResultUpdate(2, PaymentStatus.SUCCEEDED, "", "", "ref-2", True)
    await store.apply_results(
        batch_id, [unreachable, paid], owner="a:chunk", token=first.lease_token, released=[3], refused=refused
    )
    assert {1, 3} <= set(refused)
    assert (await _payment(store, batch_id, 1)).status == "sent"
    assert (await _payment(store, batch_id, 3)).lease_token == token  # still the new holder's
    # The rail's fact is never lost: taken from the stale holder, or else found by the new holder's look-up.
    two = await _payment(store, batch_id, 2)
    assert two.status == "succeeded" or (two.status == "sent" and two.lease_token == token)
    await store.apply_results(batch_id, [paid], owner="b:chunk", token=token)
    assert (await _payment(store, batch_id, 2)).status == "succeeded"
    # The holder's own statements apply.
    refused.clear()
    await store.apply_results(batch_id, [unreachable], owner="b:chunk", token=token, refused=refused)
    assert not refused and (await _payment(store, batch_id, 1)).status == "failed"
    assert await store.renew(batch_id, [3, 4], "b:chunk", token, 30) is not None


async def test_a_look_up_showing_two_executions_flags_the_payment(store: Store) -> None:
    batch_id = await _batch_with_payments(store, 2)
    claim = await store.claim(batch_id, [1, 2], "a:chunk", lease_s=30)
    twice = ResultUpdate(1, PaymentStatus.SUCCEEDED, "", "", "ref-1", True, rail_executions=2)
    once = ResultUpdate(2, PaymentStatus.SUCCEEDED, "", "", "ref-2", True, rail_executions=1)
    await store.apply_results(batch_id, [twice, once], owner="a:chunk", token=claim.lease_token)
    flagged = await _payment(store, batch_id, 1)
    assert flagged.status == "succeeded"
    assert flagged.attention_reason == "paid more than once: the rail executed this key 2 times"
    assert (await _payment(store, batch_id, 2)).attention_reason == ""


async def test_payments_a_verify_only_look_up_cannot_find_are_sent_again_with_their_keys(
    store: Store,
) -> None:
    from gpo.v1 import rail_pb2
    from sqlalchemy import select

    from gpo_server.storage.tables import outbox
    from gpo_server.work import RailWorkBuilder

    batch_id = await _batch_with_payments(store, 3)
    async with store.engine.connect() as conn:
        before = len((await conn.execute(select(outbox.c.id))).all())
    claim = await store.claim(batch_id, [1, 2, 3], "sweep:chunk", lease_s=30)
    key = (await _payment(store, batch_id, 2)).idempotency_key
    await store.apply_results(
        batch_id,
        [],
        owner="sweep:chunk",
        token=claim.lease_token,
        unknown=[2],
        redispatch=RailWorkBuilder({}, 1000),
    )
    async with store.engine.connect() as conn:
        payloads = [r.payload for r in (await conn.execute(select(outbox).order_by(outbox.c.id))).all()]
    assert len(payloads) == before + 1
    chunk = rail_pb2.WorkChunk.FromString(payloads[-1])
    assert not chunk.verify_only and [(i.payment_number, i.idempotency_key) for i in chunk.items] == [
        (2, key)
    ]
    again = await _payment(store, batch_id, 2)
    assert again.status == "sent" and again.lease_owner == "" and again.attention_reason == ""
    # The new chunk's claim verifies it at once (nobody holds it); the others stay the sweep's.
    redelivered = await store.claim(batch_id, [2], "other:chunk", lease_s=30)
    assert redelivered.verify == {2}


# ---- dead-lettered chunks are re-driven, boundedly ---------------------------------------------


async def _queued_batch(store: Store, count: int) -> tuple[int, str, bytes]:
    """A dispatched batch whose payments are QUEUED (published, never claimed), but for the last, still
    ACCEPTED (a dead letter can beat the relay's commit of the QUEUED mark): its id, uid, and its first
    work chunk's body, as a dead letter would carry it."""
    from sqlalchemy import select, update

    from gpo_server.storage.tables import batches, outbox, payments

    batch_id = await _batch_with_payments(store, count)
    await store.finish_upload(batch_id)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(payments)
            .where(payments.c.batch_id == batch_id, payments.c.number < count)
            .values(status=PaymentStatus.QUEUED.value)
        )
        await conn.execute(
            update(outbox).where(outbox.c.batch_id == batch_id).values(publish_time=dt.datetime.now(dt.UTC))
        )
        uid = (await conn.execute(select(batches.c.uid).where(batches.c.id == batch_id))).scalar_one()
        body = (
            (await conn.execute(select(outbox.c.payload).where(outbox.c.batch_id == batch_id)))
            .scalars()
            .first()
        )
    assert body is not None
    return batch_id, uid, bytes(body)


async def _work_of(store: Store, batch_id: int) -> list[Any]:
    from sqlalchemy import select

    from gpo_server.storage.tables import outbox

    async with store.engine.connect() as conn:
        query = select(outbox).where(outbox.c.batch_id == batch_id, outbox.c.publish_time.is_(None))
        return list((await conn.execute(query.order_by(outbox.c.id))).all())


async def test_a_dead_lettered_chunks_never_claimed_payments_are_sent_again_then_left_for_an_operator(
    store: Store,
) -> None:
    from gpo.v1 import rail_pb2

    from gpo_server.work import RailWorkBuilder

    batch_id, uid, body = await _queued_batch(store, 4)
    keys = {n: (await _payment(store, batch_id, n)).idempotency_key for n in range(1, 5)}
    live = await store.claim(batch_id, [1], "live:chunk", lease_s=300, max_call_s=5)
    assert live.execute == {1}  # held and perhaps in flight: never re-driven
    build = RailWorkBuilder({}, 1000)

    async def dead_letter() -> Any:
        before = dt.datetime.now(dt.UTC)
        outcome = await store.record_dead_letter(
            RAIL,
            "chunk-1",
            uid,
            [1, 2, 3, 4],
            "delivery_limit",
            body,
            redrive=build,
            max_redrives=2,
            redrive_after_s=30,
        )
        return outcome, before

    for redrive, wait_s in ((1, 30), (2, 60)):
        (outcome, before) = await dead_letter()
        assert (outcome.redriven, outcome.exhausted) == (3, 0)
        work = await _work_of(store, batch_id)
        assert len(work) == redrive  # one new chunk per dead letter, none for the held payment
        chunk = rail_pb2.WorkChunk.FromString(work[-1].payload)
        assert not chunk.verify_only
        assert [(i.payment_number, i.idempotency_key) for i in chunk.items] == [
            (n, keys[n]) for n in (2, 3, 4)
        ]
        not_before = (
            work[-1].not_before.replace(tzinfo=dt.UTC)
            if work[-1].not_before.tzinfo is None
            else work[-1].not_before
        )
        assert (
            before + dt.timedelta(seconds=wait_s - 1)
            <= not_before
            <= before + dt.timedelta(seconds=wait_s + 5)
        )
        for n in (2, 3, 4):
            row = await _payment(store, batch_id, n)
            status = "accepted" if n == 4 else "queued"
            assert (row.status, row.redrives, row.attention_reason) == (status, redrive, "")
        held = await _payment(store, batch_id, 1)
        assert held.status == "sent" and held.lease_token == live.lease_token
        assert held.attention_reason == "work chunk chunk-1 was dead-lettered (delivery_limit)"

    # The bound: a third dead letter of the same payments sends nothing and tells an operator why.
    outcome, _ = await dead_letter()
    assert (outcome.redriven, outcome.exhausted) == (0, 3)
    assert len(await _work_of(store, batch_id)) == 2
    for n in (2, 3, 4):
        row = await _payment(store, batch_id, n)
        assert row.status == ("accepted" if n == 4 else "queued") and row.redrives == 2
        assert row.attention_reason.startswith(
            "work chunk chunk-1 was dead-lettered (delivery_limit) after this payment had been sent again 2"
            " times: no longer sent by itself"
        )

    # An undecodable dead letter names no payment: recorded, nothing sent, so it cannot loop.
    outcome = await store.record_dead_letter(
        RAIL, "poison-1", "", [], "rejected", b"\xff", redrive=build, max_redrives=2, redrive_after_s=30
    )
    assert (outcome.redriven, outcome.exhausted) == (0, 0)
    assert len(await _work_of(store, batch_id)) == 2


# ---- the stuck-payment sweeper ----------------------------------------------------------------


class HangingRail(Rail):
    """Executes on the simulator (money moves), then never answers: the call hangs forever."""

    name = "hanging"

    def __init__(self, ledger: Path, record_first: bool) -> None:
        self.simulator = SimulatorRail(SimulatorSettings(ledger_path=str(ledger)))
        self.record_first = record_first

    async def execute(self, payments: Sequence[RailPayment]) -> Sequence[RailResult]:
        if self.record_first:
            await self.simulator.execute(payments)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def look_up(self, idempotency_keys: Sequence[str]) -> Mapping[str, RailResult]:
        return await self.simulator.look_up(idempotency_keys)


async def test_the_sweeper_resolves_a_payment_whose_rail_executed_but_never_answered(tmp_path: Path) -> None:
    gpo = await start(
        tmp_path,
        HangingRail(tmp_path / "ledger.db", record_first=True),
        claim_lease_s=1.0,
        stuck_after_s=1.0,
        max_sweeps=3,
    )
    try:
        name = await upload(gpo.client, 30)
        batch = await wait_state(gpo.client, name, res_pb.BATCH_STATE_COMPLETED, timeout_s=30)
        assert status_counts(batch) == {"succeeded": 30}
        totals = read_totals(gpo.ledger)
        assert totals.payments == 30 and totals.duplicates == 0  # verified, never executed again
    finally:
        await gpo.close()
        await gpo.orchestrator.stop(grace_s=1)


async def test_a_rail_call_that_never_answers_ends_unreachable_once_it_can_no_longer_take_effect(
    tmp_path: Path,
) -> None:
    """The rail hangs without recording anything. Each call is abandoned after the rail's max call time
    (5 s for embedded rails), when it can no longer take effect, so the look-up that follows is
    conclusive; after the last attempt the payments fail as UNREACHABLE (keys kept), never guessed paid."""
    gpo = await start(
        tmp_path,
        HangingRail(tmp_path / "ledger.db", record_first=False),
        claim_lease_s=0.5,
        stuck_after_s=0.5,
        max_sweeps=1,
    )
    try:
        name = await upload(gpo.client, 5)
        batch = await wait_state(gpo.client, name, res_pb.BATCH_STATE_COMPLETED, timeout_s=90)
        assert status_counts(batch) == {"failed": 5}
        failed = await payments_of(gpo.client, name)
        assert {p.reason_code for p in failed} == {"rjct.rail.unreachable"}
        assert read_totals(gpo.ledger).executions == 0  # nothing was ever executed
    finally:
        await gpo.close()
        await gpo.orchestrator.stop(grace_s=1)


# ---- dead letters -----------------------------------------------------------------------------


async def test_a_poison_message_is_dead_lettered_and_listed(running: Running) -> None:
    broker = running.orchestrator.broker
    await broker.publish(RAIL, [OutgoingMessage(b"\xff not a protobuf", "poison-1")])
    deadline = time.monotonic() + 20
    found: list[res_pb.DeadLetter] = []
    while time.monotonic() < deadline and not found:
        found = [d async for d in running.operator.dead_letters(RAIL)]
        await asyncio.sleep(0.1)
    assert len(found) == 1
    assert found[0].rail == RAIL and found[0].chunk_id == "poison-1" and found[0].reason == "rejected"
    # The rail keeps serving after the poison message.
    name = await upload(running.client, 50)
    await wait_state(running.client, name, res_pb.BATCH_STATE_COMPLETED)


async def test_a_declared_total_that_does_not_add_up_is_refused_and_nothing_is_paid(running: Running) -> None:
    import grpc
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    inputs = list(synthetic_payments(10, 0))
    header = api_pb.BatchHeader(
        program=PROGRAM,
        request_id=str(uuid.uuid4()),
        payer_fa="account:treasury@cb",
        expected_payment_count=10,
        expected_total_amount="1.00",
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await running.client.upload(header, [inputs])
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    status = rpc_status.from_call(raised.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "DECLARATION_MISMATCH"
    batch = await running.client.get_batch(info.metadata["batch"])
    assert batch.state == res_pb.BATCH_STATE_UPLOADING and batch.payment_count == 10
    await asyncio.sleep(0.5)  # time the relay would need to dispatch anything it wrongly could
    assert {p.status for p in await payments_of(running.client, batch.name)} == {
        res_pb.PAYMENT_STATUS_ACCEPTED
    }
