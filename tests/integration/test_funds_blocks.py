"""Funds check and block in the orchestrator (docs/TREASURY.md): the batch waits in AWAITING_FUNDS, the
RailService funds calls a sidecar makes, and the whole flow embedded (SQLite, the in-process sidecar).

The PostgreSQL tests play the rail's sidecar themselves over RailService, so each step can be checked
and repeated: a duplicated report, a report for another rail, a cancel's release.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2, rail_pb2_grpc
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.client import status_counts
from tests.conftest import Gpo, _delete_queues, running_gpo

PAYER = "account:treasury-001@central-bank"


def rails_file(path: Path, rail: str, ledger: Path, balance: str = "") -> Path:
    balances = f'balances = {{ "{PAYER}" = {{ KES = "{balance}" }} }}' if balance else ""
    path.write_text(
        f"""
[rails.{rail}]
kind = "simulator"
funds_control = true
[rails.{rail}.options]
ledger_path = "{ledger}"
{balances}

[defaults]
default_rail = "{rail}"
"""
    )
    return path


def upload_header(count: int, schedule: dt.datetime | None = None) -> api_pb.BatchHeader:
    header = api_pb.BatchHeader(program="funds", request_id=str(uuid.uuid4()), payer_fa=PAYER)
    if schedule is not None:
        header.schedule_time.FromDatetime(schedule)
    return header


def chunk(prefix: str, count: int, currency: str = "KES") -> list[api_pb.PaymentInput]:
    return [
        api_pb.PaymentInput(
            reference_id=f"{prefix}-{i}",
            payee_fa=f"mobile:2547{i:08d}@mpesa",
            amount="10.50",
            currency_code=currency,
        )
        for i in range(1, count + 1)
    ]


async def eventually(gpo: Gpo, name: str, ok: Callable[[res_pb.Batch], bool], what: str) -> res_pb.Batch:
    client = gpo.client(["funds"])
    deadline = time.monotonic() + 60
    while True:
        batch = await client.get_batch(name)
        if ok(batch):
            return batch
        assert time.monotonic() < deadline, f"{what}: {batch}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[tuple[Gpo, str]]:
    rail = f"bank{uuid.uuid4().hex[:10]}"
    config = rails_file(tmp_path / "rails.toml", rail, tmp_path / "bank.db")
    async with running_gpo("postgres", tmp_path, rails_config=str(config), funds_recheck_s=0.5) as gpo:
        try:
            yield gpo, rail
        finally:
            await _delete_queues(gpo.orchestrator.settings.amqp_url, rail)


def funds_stub(
    gpo: Gpo, rails: list[str]
) -> tuple[rail_pb2_grpc.RailServiceStub, tuple[tuple[str, str], ...]]:
    """A sidecar's RailService stub for `rails` (its channel closes with the test's event loop)."""
    channel = grpc.aio.insecure_channel(gpo.target)
    return rail_pb2_grpc.RailServiceStub(channel), (
        ("authorization", f"Bearer {gpo.token_for_rails(rails)}"),
    )


def claim_request(rail: str, claim_id: str = "test:funds") -> rail_pb2.ClaimFundsBlocksRequest:
    return rail_pb2.ClaimFundsBlocksRequest(
        rail=rail, claim_id=claim_id, lease_duration=duration_pb2.Duration(seconds=30)
    )


async def test_a_batch_waits_for_its_blocks_and_a_report_applies_once(pg: tuple[Gpo, str]) -> None:
    gpo, rail = pg
    client = gpo.client(["funds"])
    stub, metadata = funds_stub(gpo, [rail])
    # Two currencies: one block each. Scheduled for tomorrow, so nothing is published once released.
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    uploaded = await client.upload(upload_header(5, tomorrow), [chunk("k", 3), chunk("u", 2, "USD")])
    name = uploaded.batch.name
    batch = await client.get_batch(name)
    assert batch.state == res_pb.BATCH_STATE_AWAITING_FUNDS
    assert sorted((b.currency_code, b.amount, b.state) for b in batch.funds_blocks) == [
        ("KES", "31.50", res_pb.FUNDS_BLOCK_STATE_REQUESTED),
        ("USD", "21.00", res_pb.FUNDS_BLOCK_STATE_REQUESTED),
    ]

    claimed = await stub.ClaimFundsBlocks(claim_request(rail), metadata=metadata)
    assert sorted((r.currency_code, r.amount, r.action, r.batch, r.payer_fa) for r in claimed.requests) == [
        ("KES", "31.50", rail_pb2.FUNDS_ACTION_BLOCK, name, PAYER),
        ("USD", "21.00", rail_pb2.FUNDS_ACTION_BLOCK, name, PAYER),
    ]
    # Leased: another claim gets nothing meanwhile.
    assert not (await stub.ClaimFundsBlocks(claim_request(rail, "other"), metadata=metadata)).requests
    # A sidecar serving another rail may not claim or report this rail's blocks.
    other_stub, other_metadata = funds_stub(gpo, ["elsewhere"])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await other_stub.ClaimFundsBlocks(claim_request(rail), metadata=other_metadata)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    kes, usd = sorted(claimed.requests, key=lambda r: r.currency_code)
    blocked = rail_pb2.FundsResult(block_id=kes.block_id, outcome=rail_pb2.FUNDS_OUTCOME_BLOCKED)
    report = rail_pb2.ReportFundsBlocksRequest(rail=rail, claim_id="test:funds", results=[blocked])
    assert (await stub.ReportFundsBlocks(report, metadata=metadata)).applied_count == 1
    assert (await stub.ReportFundsBlocks(report, metadata=metadata)).applied_count == 0  # a repeat
    assert (await client.get_batch(name)).state == res_pb.BATCH_STATE_AWAITING_FUNDS  # USD not yet

    held = rail_pb2.FundsResult(
        block_id=usd.block_id,
        outcome=rail_pb2.FUNDS_OUTCOME_INSUFFICIENT,
        reason_message="available 3.00 USD",
    )
    await stub.ReportFundsBlocks(
        rail_pb2.ReportFundsBlocksRequest(rail=rail, claim_id="test:funds", results=[held]), metadata=metadata
    )
    batch = await client.get_batch(name)
    assert batch.state == res_pb.BATCH_STATE_AWAITING_FUNDS
    [insufficient] = [b for b in batch.funds_blocks if b.currency_code == "USD"]
    assert (insufficient.state, insufficient.reason_code, insufficient.reason_message) == (
        res_pb.FUNDS_BLOCK_STATE_INSUFFICIENT,
        "funds.insufficient",
        "available 3.00 USD",
    )
    assert status_counts(batch) == {"accepted": 5}
    # A watcher sees why the batch waits too.
    call = client.stub.WatchBatch(api_pb.WatchBatchRequest(name=name), metadata=client.metadata)
    watched = (await call.read()).batch
    call.cancel()
    assert watched.state == res_pb.BATCH_STATE_AWAITING_FUNDS
    assert "funds.insufficient" in [b.reason_code for b in watched.funds_blocks]

    # The re-check (GPO_FUNDS_RECHECK_S, 0.5 s here) offers it again; now the bank blocks it.
    deadline = time.monotonic() + 30
    while not (again := await stub.ClaimFundsBlocks(claim_request(rail), metadata=metadata)).requests:
        assert time.monotonic() < deadline, "the insufficient block was never offered again"
        await asyncio.sleep(0.2)
    assert [(r.block_id, r.action) for r in again.requests] == [(usd.block_id, rail_pb2.FUNDS_ACTION_BLOCK)]
    blocked_usd = rail_pb2.FundsResult(block_id=usd.block_id, outcome=rail_pb2.FUNDS_OUTCOME_BLOCKED)
    await stub.ReportFundsBlocks(
        rail_pb2.ReportFundsBlocksRequest(rail=rail, claim_id="test:funds", results=[blocked_usd]),
        metadata=metadata,
    )
    batch = await client.get_batch(name)
    assert batch.state == res_pb.BATCH_STATE_PROCESSING
    assert {b.state for b in batch.funds_blocks} == {res_pb.FUNDS_BLOCK_STATE_BLOCKED}
    assert {b.attempt_count for b in batch.funds_blocks} == {1, 2}

    # Cancel: both blocks are to be released, and the sidecar learns it from the same claim.
    await gpo.client([], ["operator"]).cancel(name)
    releases = await stub.ClaimFundsBlocks(claim_request(rail), metadata=metadata)
    assert sorted(r.block_id for r in releases.requests) == sorted([kes.block_id, usd.block_id])
    assert {r.action for r in releases.requests} == {rail_pb2.FUNDS_ACTION_RELEASE}
    done = [
        rail_pb2.FundsResult(block_id=r.block_id, outcome=rail_pb2.FUNDS_OUTCOME_RELEASED)
        for r in releases.requests
    ]
    applied = await stub.ReportFundsBlocks(
        rail_pb2.ReportFundsBlocksRequest(rail=rail, claim_id="test:funds", results=done), metadata=metadata
    )
    assert applied.applied_count == 2
    batch = await client.get_batch(name)
    assert batch.state == res_pb.BATCH_STATE_CANCELLED
    assert {b.state for b in batch.funds_blocks} == {res_pb.FUNDS_BLOCK_STATE_RELEASED}


async def test_an_unset_outcome_is_refused(pg: tuple[Gpo, str]) -> None:
    gpo, rail = pg
    stub, metadata = funds_stub(gpo, [rail])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ReportFundsBlocks(
            rail_pb2.ReportFundsBlocksRequest(
                rail=rail, claim_id="x", results=[rail_pb2.FundsResult(block_id="b")]
            ),
            metadata=metadata,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_embedded_the_in_process_sidecar_blocks_holds_and_pays(tmp_path: Path) -> None:
    """SQLite and the in-process sidecar: a batch within the balance is blocked and paid; the next,
    beyond what is left, is held with funds.insufficient and nothing of it paid."""
    config = rails_file(tmp_path / "rails.toml", "bank", tmp_path / "bank.db", balance="100.00")
    async with running_gpo("embedded", tmp_path, rails_config=str(config)) as gpo:
        client = gpo.client(["funds"])
        first = (await client.upload(upload_header(6), [chunk("a", 6)])).batch.name  # 63.00
        paid = await eventually(
            gpo, first, lambda b: b.state == res_pb.BATCH_STATE_COMPLETED, "the first batch pays"
        )
        assert [b.state for b in paid.funds_blocks] == [res_pb.FUNDS_BLOCK_STATE_BLOCKED]
        assert status_counts(paid) == {"succeeded": 6}
        second = (await client.upload(upload_header(4), [chunk("b", 4)])).batch.name  # 42.00 > 37.00
        held = await eventually(
            gpo,
            second,
            lambda b: [x.state for x in b.funds_blocks] == [res_pb.FUNDS_BLOCK_STATE_INSUFFICIENT],
            "the second batch held",
        )
        assert held.state == res_pb.BATCH_STATE_AWAITING_FUNDS
        assert held.funds_blocks[0].reason_code == "funds.insufficient"
        assert status_counts(held) == {"accepted": 4}
