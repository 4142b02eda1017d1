"""A dead-lettered chunk is paid without an operator (issue 18): real processes on PostgreSQL and
RabbitMQ, the simulator's ledger as the oracle.

The chunks are dead-lettered for real: a consumer that is not a sidecar takes every work chunk of the
rail and returns it, again and again, until RabbitMQ's delivery limit (x-delivery-limit, 20) sends it to
the dead-letter queue. No claim ever took their payments, so they are QUEUED. Then a real sidecar starts,
and the orchestrator's dead-letter recorder must send them out again with their keys, by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aio_pika
import pytest

from gpo_server.client import status_counts
from tests.faults.rig import (
    RECOVERY_DEADLINE_S,
    Batch,
    Rig,
    UploadProgress,
    check_ledger,
    completed,
    drain_sidecars,
    log_lines,
    upload,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

CHUNK = 250  # FAULT_ENV's work chunk size


async def return_every_delivery(amqp_url: str, rail: str, returned: list[str], stop: asyncio.Event) -> None:
    """A broken consumer: every work chunk it gets goes straight back to the queue (basic.reject with
    requeue), so each one comes back until the broker dead-letters it. Queue named as SIDECAR_CONTRACT.md
    section 1 says."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=8)
        queue = await channel.get_queue(f"gpo.rail.{rail}", ensure=False)
        async with queue.iterator() as deliveries:
            async for message in deliveries:
                returned.append(message.message_id or "")
                await message.reject(requeue=True)
                if stop.is_set():
                    return


async def test_a_dead_lettered_chunk_is_paid_without_an_operator(rig: Rig) -> None:
    node = rig.add_replica(GPO_REDRIVE_AFTER_S="5", GPO_MAX_REDRIVES="3")
    await rig.start(node)
    operator = node.client([], ["operator"])
    rig.clients.append(operator)
    batch, client = Batch.make(2000), rig.client(node)
    chunks = batch.count // CHUNK

    returned: list[str] = []
    stop = asyncio.Event()
    broken = asyncio.create_task(return_every_delivery(rig.amqp_url, rig.rail, returned, stop))
    try:
        uploaded = await upload(client, batch, UploadProgress())
        dead: list[str] = []

        async def all_dead() -> bool:
            dead[:] = [d.chunk_id async for d in operator.dead_letters(rig.rail)]
            return len(dead) >= chunks

        deadline = time.monotonic() + 60
        while not await all_dead():
            assert time.monotonic() < deadline, f"{len(dead)} of {chunks} chunks dead-lettered in 60s"
            await asyncio.sleep(0.2)
        dead_at = time.monotonic()
    finally:
        stop.set()
        broken.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await broken
    assert len(set(dead)) == chunks and len(returned) >= 20 * chunks
    # Nothing claimed them, and no queue holds them any more.
    assert set(status_counts(await client.get_batch(uploaded.name))) <= {"accepted", "queued"}

    rig.start_sidecar(node)
    done = await completed(client, [uploaded.name], RECOVERY_DEADLINE_S)
    final_s = time.monotonic() - dead_at
    await drain_sidecars(rig)
    verdict = check_ledger(done, batch.count, rig.ledger)
    redriven = log_lines(rig.orchestrator_log(), "sent again with their keys")
    assert redriven >= chunks
    verdict.report(
        "every work chunk dead-lettered by its delivery limit before any claim",
        dead_lettered_chunks=len(set(dead)),
        returns_before_dead_letter=len(returned),
        redrive_log_lines=redriven,
        final_s_after_last_dead_letter=round(final_s, 1),
    )
