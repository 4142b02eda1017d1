"""Funds check and block, end to end (issue 17, item 3; docs/TREASURY.md): `gpo serve` and a simulator
`gpo-sidecar` as processes on PostgreSQL and RabbitMQ, the rail declaring `funds_control` and the
simulated bank holding 5,000.00 KES in the payer's account.

One story, in order: batch A (2,000.00) is blocked, pays and is debited against its block; batch C
(1,000.00, scheduled for tomorrow) is blocked and waits; batch B (3,000.00) finds 2,000.00 available and
is held in AWAITING_FUNDS with reason funds.insufficient, nothing of it published; cancelling C releases
its block at the bank; B's re-check then blocks it, and it pays. The bank's ledger shows one block per
batch, what each paid against it, and no payment executed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name
from gpo_server.client import GpoClient, status_counts
from rail_sidecars.rails.simulator.store import read_totals
from tests.faults.rig import delete_queues
from tests.support.databases import create_database, drop_database
from tests.support.processes import Cluster, service_urls

PROGRAM = "funds-e2e"
PAYER = "account:treasury-001@central-bank"
DEADLINE_S = 90.0


def rails_file(path: Path, rail: str, ledger: Path) -> Path:
    path.write_text(
        f"""
[rails.{rail}]
kind = "simulator"
funds_control = true
chunk_size = 10
[rails.{rail}.options]
ledger_path = "{ledger}"
balances = {{ "{PAYER}" = {{ KES = "5000.00" }} }}

[defaults]
default_rail = "{rail}"
"""
    )
    return path


def header(count: int, total: str, schedule: dt.datetime | None = None) -> api_pb.BatchHeader:
    h = api_pb.BatchHeader(
        program=PROGRAM,
        request_id=str(uuid.uuid4()),
        payer_fa=PAYER,
        expected_payment_count=count,
        expected_total_amount=total,
    )
    if schedule is not None:
        h.schedule_time.FromDatetime(schedule)
    return h


def payments(prefix: str, count: int) -> list[list[api_pb.PaymentInput]]:
    return [
        [
            api_pb.PaymentInput(
                reference_id=f"{prefix}-{i:04d}",
                payee_fa=f"mobile:2547{i:08d}@mpesa",
                amount="100.00",
                currency_code="KES",
                payee_name=f"Beneficiary {i}",
            )
            for i in range(1, count + 1)
        ]
    ]


async def until(
    read: Callable[[], Awaitable[res_pb.Batch]], ok: Callable[[res_pb.Batch], bool], what: str
) -> res_pb.Batch:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        batch = await read()
        if ok(batch):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE_S:.0f} s; the batch stands as {batch}")
        await asyncio.sleep(0.2)


def block_states(batch: res_pb.Batch) -> list[str]:
    return [
        res_pb.FundsBlockState.Name(b.state).removeprefix("FUNDS_BLOCK_STATE_") for b in batch.funds_blocks
    ]


def state(batch: res_pb.Batch) -> str:
    return res_pb.BatchState.Name(batch.state).removeprefix("BATCH_STATE_")


def bank_blocks(ledger: Path) -> dict[str, dict[str, Any]]:
    return {b["batch"]: b for b in read_totals(ledger).funds_blocks}


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url, prefix="gpo_funds")
    rail = f"funds{uuid.uuid4().hex[:10]}"
    world = Cluster(
        workdir=tmp_path,
        database_url=database_url,
        amqp_url=amqp_url,
        rails_config=rails_file(tmp_path / "rails.toml", rail, tmp_path / "bank.db"),
        # A refused block is asked for again within seconds here, not the production five minutes.
        extra_env={"GPO_FUNDS_RECHECK_S": "1"},
        plaintext=True,
    )
    try:
        await asyncio.to_thread(world.start_orchestrator)
        world.start_sidecar(rail, "--lease-s", "5")
        yield world
    finally:
        world.stop()
        await delete_queues(amqp_url, [queue_name(rail), dead_letter_queue_name(rail)])
        with contextlib.suppress(Exception):
            await drop_database(shared_url, database_url)


async def test_funds_are_blocked_debited_held_and_released(cluster: Cluster, tmp_path: Path) -> None:
    ledger = tmp_path / "bank.db"
    client: GpoClient = cluster.client([PROGRAM])
    operator = cluster.client([], ["operator"])
    try:
        # A: 20 x 100.00 = 2,000.00 of 5,000.00: blocked, paid, debited against the block.
        a = (await client.upload(header(20, "2000.00"), payments("a", 20))).batch.name
        done_a = await until(lambda: client.get_batch(a), lambda b: state(b) == "COMPLETED", "batch A pays")
        assert block_states(done_a) == ["BLOCKED"]
        assert done_a.funds_blocks[0].amount == "2000.00"
        assert status_counts(done_a).get("succeeded") == 20
        bank = bank_blocks(ledger)[a]
        assert (bank["amount"], bank["used"], bank["remaining"], bank["state"], bank["requests"]) == (
            "2000.00",
            "2000.00",
            "0.00",
            "blocked",
            1,
        )

        # C: 1,000.00, scheduled for tomorrow: blocked (PROCESSING), nothing paid yet.
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        c = (await client.upload(header(10, "1000.00", tomorrow), payments("c", 10))).batch.name
        blocked_c = await until(
            lambda: client.get_batch(c), lambda b: block_states(b) == ["BLOCKED"], "batch C blocked"
        )
        assert state(blocked_c) == "PROCESSING"

        # B: 3,000.00 with 2,000.00 available: held, visibly, and nothing of it published.
        b = (await client.upload(header(30, "3000.00"), payments("b", 30))).batch.name
        held = await until(
            lambda: client.get_batch(b), lambda x: block_states(x) == ["INSUFFICIENT"], "batch B held"
        )
        assert state(held) == "AWAITING_FUNDS"
        assert held.funds_blocks[0].reason_code == "funds.insufficient"
        assert "available 2000.00 KES" in held.funds_blocks[0].reason_message
        assert status_counts(held) == {"accepted": 30}  # never QUEUED: not one chunk published
        assert b not in bank_blocks(ledger)
        assert read_totals(ledger).executions == 20  # A's alone
        # A re-check that still finds too little keeps it held (attempts grow; the reason stays).
        rechecked = await until(
            lambda: client.get_batch(b), lambda x: x.funds_blocks[0].attempt_count >= 2, "batch B re-checked"
        )
        assert state(rechecked) == "AWAITING_FUNDS"
        assert status_counts(rechecked) == {"accepted": 30}

        # Cancelling C releases its block at the bank: 3,000.00 available again.
        await operator.cancel(c)
        released = await until(
            lambda: client.get_batch(c), lambda x: block_states(x) == ["RELEASED"], "C's block released"
        )
        assert state(released) == "CANCELLED"
        assert bank_blocks(ledger)[c]["state"] == "released"
        assert bank_blocks(ledger)[c]["used"] == "0.00"

        # B's next re-check blocks it, and it pays against its block.
        done_b = await until(lambda: client.get_batch(b), lambda x: state(x) == "COMPLETED", "batch B pays")
        assert block_states(done_b) == ["BLOCKED"]
        assert done_b.funds_blocks[0].reason_code == ""
        assert status_counts(done_b).get("succeeded") == 30
        bank = bank_blocks(ledger)[b]
        assert (bank["amount"], bank["used"], bank["remaining"], bank["requests"]) == (
            "3000.00",
            "3000.00",
            "0.00",
            1,
        )
        totals = read_totals(ledger)
        assert (totals.payments, totals.duplicates, totals.executions) == (50, 0, 50)
        assert len(totals.funds_blocks) == 3

        # Every step is in the audit trail.
        actions = [
            e.action
            for e in (
                await operator.stub.ListAuditEvents(
                    api_pb.ListAuditEventsRequest(batch=b, page_size=100), metadata=operator.metadata
                )
            ).audit_events
        ]
        assert "batch.funds_insufficient" in actions and "batch.funds_blocked" in actions
    finally:
        await client.close()
        await operator.close()
