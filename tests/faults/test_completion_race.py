"""Regression for a bug the two-replica fault test found: two result transactions that settle the last
payments of one batch at the same time each saw the other's payments as pending (READ COMMITTED), so
neither completed the batch, and it stayed PROCESSING with every payment final. Store-level and fast:
it runs the race many times on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gpo_server.domain.states import BatchState, PaymentStatus
from gpo_server.storage.store import NewBatch, NewPayment, ResultUpdate, Store
from tests.support.databases import create_database, drop_database
from tests.support.processes import service_urls

pytestmark = pytest.mark.faults

PAYMENTS = 200
ROUNDS = 40


async def _race_once(store: Store) -> BatchState:
    batch, _ = await store.create_or_get_batch(NewBatch("race", str(uuid.uuid4()), "", "", None, 0, None))
    rows = [
        NewPayment(n, f"ref-{n}", str(uuid.uuid4()), "account:payer-1@bank", "mobile:2547000001@mpesa",
                   100, "KES", "", "", "", None, None, "sim", PaymentStatus.ACCEPTED.value, "", "")
        for n in range(1, PAYMENTS + 1)
    ]  # fmt: skip
    async with store.chunk_transaction(batch.id) as tx:
        await tx.write(1, rows, [], 100 * PAYMENTS)
    await store.finish_upload(batch.id)
    claim = await store.claim(batch.id, list(range(1, PAYMENTS + 1)), "sidecar-a:chunk-1", 60)
    half = PAYMENTS // 2

    def settle(numbers: range) -> list[ResultUpdate]:
        return [ResultUpdate(n, PaymentStatus.SUCCEEDED, "", "", "sim-ref") for n in numbers]

    # Two sidecars (or two replicas) report the batch's last two halves at the same moment.
    await asyncio.gather(
        # Outcomes apply only from the claim holding the payments (its fencing token).
        store.apply_results(batch.id, settle(range(1, half + 1)), token=claim.lease_token),
        store.apply_results(batch.id, settle(range(half + 1, PAYMENTS + 1)), token=claim.lease_token),
    )
    found = await store.get_batch(batch.uid)
    assert found is not None
    return found.state


async def test_concurrent_last_results_complete_the_batch() -> None:
    shared_url, _ = service_urls()
    url = await create_database(shared_url)
    store = Store.open(url)
    try:
        await store.migrate()
        states = [await _race_once(store) for _ in range(ROUNDS)]
    finally:
        await store.close()
        await drop_database(shared_url, url)
    stuck = states.count(BatchState.PROCESSING)
    assert stuck == 0, f"{stuck} of {ROUNDS} batches stayed PROCESSING with every payment final"
