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

from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name
from tests.faults.rig import (
    Batch,
    Rig,
    UploadProgress,
    check_ledger,
    completed,
    drain_sidecars,
    poll_batch,
    settled,
    until,
    upload,
)
from tests.support.clustered import PgPair, RabbitCluster, pg_available, rabbit_available
from tests.support.databases import create_database, drop_database
from tests.support.processes import service_urls

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

# A few thousand payments: long enough to be paying when the fault strikes, short enough for CI.
PAYMENTS = 5000
# Small work chunks: many in flight (claimed, executing, reporting) at the moment of the fault.
CHUNK_ENV = {"GPO_WORK_CHUNK_SIZE": "100"}


@pytest.fixture
async def pg_pair() -> AsyncIterator[PgPair]:
    if not pg_available():
        # services.sh installs them: their absence is a broken setup, not a skip.
        pytest.fail("PostgreSQL 15's server binaries (initdb, pg_ctl) are not installed")
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


@pytest.fixture
async def rabbit_cluster() -> AsyncIterator[RabbitCluster]:
    if not rabbit_available():
        pytest.fail("rabbitmq-server is not installed (scripts/services.sh installs it)")
    cluster = RabbitCluster()
    try:
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.close)


async def test_kill9_rabbitmq_node_leading_the_rails_queue(
    tmp_path: Path, rabbit_cluster: RabbitCluster
) -> None:
    """The node leading the rail's quorum queue (replicated on all three) dies with kill -9 while the
    sidecar pays. The queue elects a leader among the two left; orchestrator and sidecar, given every
    node in GPO_AMQP_URL, reconnect to a live one; redeliveries are defused by the claims."""
    shared_url, _ = service_urls()
    database_url = await create_database(shared_url)
    rig = Rig(tmp_path, database_url, rabbit_cluster.urls)
    try:
        node = rig.add_replica(**CHUNK_ENV)
        await rig.start(node)
        rig.start_sidecar(node)
        # The queue's leader is found before the batch starts: rabbitmqctl takes seconds, in which the
        # batch would finish, and the kill must come while it pays.
        queue = queue_name(rig.rail)
        members: list[str] = []

        async def declared() -> bool:
            members[:] = await asyncio.to_thread(rabbit_cluster.members, queue)
            return bool(members)

        await until(declared, 60, f"the sidecar to declare {queue}")
        assert len(members) == 3, f"the rail's queue is not replicated on three nodes: {members}"
        leader = await asyncio.to_thread(rabbit_cluster.queue_leader, queue)
        batch, client = Batch.make(PAYMENTS, seed=23), rig.client(node)
        uploaded = await upload(client, batch, UploadProgress())
        await poll_batch(
            client, uploaded.name, lambda b: settled(b) >= PAYMENTS // 5, interval_s=0.02, what="20% settled"
        )
        await asyncio.to_thread(rabbit_cluster.kill9, leader)
        fault_at = time.monotonic()
        # Read after the node is dead: what settled by then, and the batch must still have been paying.
        after_kill = await client.get_batch(uploaded.name)
        assert settled(after_kill) < PAYMENTS, "the batch finished before the fault; nothing was tested"

        done = await completed(client, [uploaded.name])
        final_s = time.monotonic() - fault_at
        new_leader = await asyncio.to_thread(rabbit_cluster.queue_leader, queue)
        # Both clients are back on a live node: the sidecar consumes the rail's queue again, the
        # orchestrator its dead-letter queue; a second batch then travels through the new leader.
        queues = [queue, dead_letter_queue_name(rig.rail)]
        consumers: dict[str, int] = {}

        async def consumed_again() -> bool:
            consumers.update(await asyncio.to_thread(rabbit_cluster.consumers, queues))
            return len(consumers) == 2 and all(consumers.values())

        await until(consumed_again, 60, f"consumers on {queues} after the kill (last: {consumers})")
        reconnected_s = time.monotonic() - fault_at
        after = Batch.make(1000, seed=29)
        second = await upload(client, after, UploadProgress())
        done += await completed(client, [second.name])
        await drain_sidecars(rig)
        verdict = check_ledger(done, batch.count + after.count, rig.ledger)
        verdict.report(
            "kill -9 of the RabbitMQ node leading the rail's quorum queue (3-node cluster)",
            settled_at_fault=settled(after_kill),
            killed=leader.name.split("@")[0],
            new_leader=new_leader.name.split("@")[0],
            final_s=round(final_s, 1),
            consumers_back_s=round(reconnected_s, 1),
        )
    finally:
        await rig.close()
        await drop_database(shared_url, database_url)
