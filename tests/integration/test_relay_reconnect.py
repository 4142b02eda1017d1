"""The outbox relay across a dropped RabbitMQ connection (issue 10): real PostgreSQL, real RabbitMQ.

The broker force-closes the relay's connection (rabbitmqctl close_connection, as a broker shutdown or a
network cut does) after the relay has taken its round of chunks from the outbox and before it publishes
them. The publish must wait for the robust connection to come back and then publish, so the relay sees
no error, and the queue ends up holding every chunk exactly as the outbox stored it.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import aio_pika
import pytest
from gpo.v1 import disbursement_service_pb2 as api_pb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from yarl import URL

from gpo_kernel.queueing.base import Broker, Delivery, OutgoingMessage, dead_letter_queue_name, queue_name
from gpo_server.api.auth import mint_token
from gpo_server.app import Orchestrator
from gpo_server.client import GpoClient, chunked
from gpo_server.config import Settings
from tests.support.databases import create_database, drop_database
from tests.support.processes import service_urls
from tests.support.rabbitmq import close_connection_named

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.rabbitmq,
]
WAIT = 60.0  # seconds: a deadline for what is asynchronous, never an assertion about speed
PAYMENTS, CHUNK = 1_000, 50  # 20 work chunks: three relay rounds of up to 8


class DropsConnectionOnFirstPublish(Broker):
    """Wraps the orchestrator's broker: the first publish has the broker drop the connection first."""

    def __init__(self, inner: Broker, connection_name: str) -> None:
        self.inner = inner
        self.connection_name = connection_name
        self.dropped = False
        self.errors: list[BaseException] = []
        self.published: list[str] = []

    async def publish(self, rail: str, messages: Sequence[OutgoingMessage]) -> None:
        if not self.dropped:
            self.dropped = await asyncio.to_thread(close_connection_named, self.connection_name)
            assert self.dropped, "rabbitmqctl found no connection to drop"
        try:
            await self.inner.publish(rail, messages)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        self.published.extend(m.message_id for m in messages)

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def declare_rail(self, rail: str) -> None:
        await self.inner.declare_rail(rail)

    def consume(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        return self.inner.consume(rail, prefetch)

    def consume_dead_letters(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        return self.inner.consume_dead_letters(rail, prefetch)

    async def dead_letter_count(self, rail: str) -> int:
        return await self.inner.dead_letter_count(rail)


async def _queued_messages(amqp_url: str, rail: str, expected: int) -> dict[str, list[bytes]]:
    """Every message in the rail's queue, by message id (a chunk whose confirm was lost may be there twice)."""
    seen: dict[str, list[bytes]] = {}
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name(rail))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            message = await queue.get(fail=False)
            if message is None:
                if sum(map(len, seen.values())) >= expected or loop.time() > deadline:
                    break
                await asyncio.sleep(0.1)  # a quorum queue makes a confirmed message visible shortly after
                continue
            seen.setdefault(message.message_id or "", []).append(message.body)
            await message.ack()
        for name in (queue_name(rail), dead_letter_queue_name(rail)):
            await channel.queue_delete(name)
    return seen


async def test_relay_round_survives_a_dropped_connection(tmp_path: Path) -> None:
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url, prefix="gpo_relay")
    connection_name = f"gpo-relay-{uuid.uuid4().hex[:8]}"
    secret = secrets.token_bytes(32)
    rail = f"relay{uuid.uuid4().hex[:12]}"
    settings = Settings(
        data_dir=tmp_path,
        listen="127.0.0.1:0",
        auth_hs256_secrets=(secret,),
        database_url=database_url,
        amqp_url=str(URL(amqp_url).update_query(name=connection_name)),
        default_rail=rail,
        work_chunk_size=CHUNK,
    )
    orchestrator = Orchestrator(settings)
    dropping = DropsConnectionOnFirstPublish(orchestrator.broker, connection_name)
    orchestrator.relay.broker = dropping  # the relay publishes through the wrapper; nothing else changes
    engine = create_async_engine(database_url)
    await orchestrator.start()
    client = GpoClient(f"127.0.0.1:{orchestrator.port}", mint_token(secret, "test", ["prog"]))
    try:
        payments = [
            api_pb.PaymentInput(
                reference_id=f"ref-{i:05d}",
                payee_fa=f"mobile:2547{i:08d}@mpesa",
                amount=f"{i % 900 + 1}.{i % 100:02d}",
                currency_code="KES",
            )
            for i in range(PAYMENTS)
        ]
        header = api_pb.BatchHeader(
            program="prog", request_id=str(uuid.uuid4()), payer_fa="account:treasury-001@central-bank"
        )
        uploaded = await client.upload(header, chunked(payments, 500))
        assert uploaded.rejected == 0

        async def unpublished() -> int:
            async with engine.connect() as conn:
                return int(
                    (
                        await conn.execute(text("SELECT count(*) FROM outbox WHERE publish_time IS NULL"))
                    ).scalar_one()
                )

        deadline = asyncio.get_running_loop().time() + WAIT
        while await unpublished():
            assert asyncio.get_running_loop().time() < deadline, "the relay never published everything"
            await asyncio.sleep(0.1)

        assert dropping.dropped
        assert dropping.errors == [], f"a publish failed across the reconnect: {dropping.errors!r}"
        async with engine.connect() as conn:
            outbox = {
                row.chunk_id: bytes(row.payload)
                for row in await conn.execute(text("SELECT chunk_id, payload FROM outbox"))
            }
            statuses: dict[str, int] = dict(
                (await conn.execute(text("SELECT status, count(*) FROM payments GROUP BY status"))).all()
            )
        assert len(outbox) == PAYMENTS // CHUNK
        assert statuses == {"queued": PAYMENTS}
        assert sorted(dropping.published) == sorted(outbox), "each chunk is published once by the relay"

        queued = await _queued_messages(amqp_url, rail, len(outbox))
        assert set(queued) == set(outbox), "the queue holds exactly the outbox's chunks"
        for chunk_id, bodies in queued.items():
            assert all(body == outbox[chunk_id] for body in bodies), f"chunk {chunk_id} changed on its way"
    finally:
        await client.close()
        await orchestrator.stop(grace_s=5)
        await engine.dispose()
        await drop_database(shared_url, database_url)
