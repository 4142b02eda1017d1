"""Clustered data services (issue 19, item 4): GPO through a PostgreSQL failover and through the loss of
the RabbitMQ node that leads a rail's quorum queue, in the middle of a batch, with the promises checked
against the simulator's ledger (tests/faults/rig.py: check_ledger).

The servers are made by the tests themselves on free ports (tests/support/clustered.py) and removed
afterwards, so the machine's own PostgreSQL and RabbitMQ are never disturbed. Run with
`pytest tests/faults/test_clustered_services.py -s` to see one FAULT-RESULT line per test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.rig import (
    Batch,
    Rig,
    UploadProgress,
    check_ledger,
    completed,
    drain_sidecars,
    poll_batch,
    settled,
    upload,
)
from tests.support.clustered import PgPair, pg_available
from tests.support.processes import service_urls

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

# A few thousand payments: long enough to be paying when the fault strikes, short enough for CI.
PAYMENTS = 5000
# Small work chunks: many in flight (claimed, executing, reporting) at the moment of the fault.
CHUNK_ENV = {"GPO_WORK_CHUNK_SIZE": "100"}


@pytest.fixture
async def pg_pair() -> AsyncIterator[PgPair]:
    if not pg_available():
        pytest.skip("PostgreSQL 15's server binaries (initdb, pg_ctl) are not installed")
    pair = PgPair(synchronous=True)
    try:
        await asyncio.to_thread(pair.start)
        yield pair
    finally:
        await asyncio.to_thread(pair.close)


async def test_postgresql_failover_to_synchronous_standby(tmp_path: Path, pg_pair: PgPair) -> None:
    """The primary dies (immediate stop: no checkpoint, connections cut) while results stream back and
    the standby is promoted. GPO's multi-host URL with target_session_attrs=read-write finds the new
    primary; the replication is synchronous, so every commit GPO saw (claims, results) survived."""
    _, amqp_url = service_urls()
    rig = Rig(tmp_path, pg_pair.url(), amqp_url)
    try:
        node = rig.add_replica(**CHUNK_ENV)
        await rig.start(node)
        rig.start_sidecar(node)
        batch, client = Batch.make(PAYMENTS, seed=19), rig.client(node)
        uploaded = await upload(client, batch, UploadProgress())
        at_fault = await poll_batch(
            client, uploaded.name, lambda b: settled(b) >= PAYMENTS // 5, interval_s=0.02, what="20% settled"
        )
        await asyncio.to_thread(pg_pair.crash_primary)
        fault_at = time.monotonic()
        await asyncio.to_thread(pg_pair.promote_standby)
        promoted_s = time.monotonic() - fault_at
        assert settled(at_fault) < PAYMENTS, "the batch finished before the fault; nothing was tested"

        done = await completed(client, [uploaded.name])
        final_s = time.monotonic() - fault_at
        await drain_sidecars(rig)
        verdict = check_ledger(done, batch.count, rig.ledger)
        verdict.report(
            "PostgreSQL primary crashed, synchronous standby promoted",
            settled_at_fault=settled(at_fault),
            promoted_s=round(promoted_s, 1),
            final_s=round(final_s, 1),
        )
    finally:
        await rig.close()
