"""RabbitMQBroker against a real RabbitMQ (GPO_TEST_AMQP_URL, e.g. amqp://guest:guest@127.0.0.1:5672/)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import aio_pika
import pytest
from yarl import URL

from gpo_kernel.queueing.base import (
    WORK_CONTENT_TYPE,
    WORK_MESSAGE_TYPE,
    OutgoingMessage,
    dead_letter_queue_name,
    queue_name,
)
from gpo_kernel.queueing.rabbitmq import RabbitMQBroker
from tests.support.rabbitmq import close_connection_named

AMQP_URL = os.environ.get("GPO_TEST_AMQP_URL")
if not AMQP_URL:
    pytest.skip(
        "GPO_TEST_AMQP_URL is not set (run scripts/services.sh for a local RabbitMQ)", allow_module_level=True
    )

pytestmark = pytest.mark.rabbitmq
WAIT = 10.0  # seconds; generous, as a quorum queue commits through Raft


def messages(n: int) -> list[OutgoingMessage]:
    return [OutgoingMessage(f"chunk {i}".encode(), f"m{i}") for i in range(n)]


async def eventually(probe: Callable[[], Awaitable[int]], expected: int) -> None:
    """Dead-lettering is asynchronous: wait for the count to reach `expected`."""
    for _ in range(int(WAIT / 0.05)):
        if await probe() == expected:
            return
        await asyncio.sleep(0.05)
    assert await probe() == expected


@pytest.fixture(scope="module")
async def admin() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    assert AMQP_URL
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        yield await connection.channel()


@pytest.fixture
async def rail(admin: aio_pika.abc.AbstractChannel) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    await admin.queue_delete(queue_name(name))
    await admin.queue_delete(dead_letter_queue_name(name))


@pytest.fixture
async def broker() -> AsyncIterator[RabbitMQBroker]:
    assert AMQP_URL
    broker = RabbitMQBroker(AMQP_URL, publish_timeout=10.0)
    await broker.connect()
    yield broker
    await broker.close()


async def test_publish_then_consume_everything(broker: RabbitMQBroker, rail: str) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(200))

    seen: dict[str, bytes] = {}
    async with aclosing(broker.consume(rail, prefetch=20)) as deliveries:
        async for delivery in deliveries:
            assert not delivery.redelivered and delivery.delivery_count == 0
            seen[delivery.message_id] = delivery.body
            await delivery.ack()
            if len(seen) == 200:
                break
    assert seen == {m.message_id: m.body for m in messages(200)}
    assert await broker.dead_letter_count(rail) == 0


async def test_messages_are_persistent_and_typed(
    broker: RabbitMQBroker, rail: str, admin: aio_pika.abc.AbstractChannel
) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, [OutgoingMessage(b"body", "id-1")])

    queue = await admin.get_queue(queue_name(rail))
    message = await queue.get(timeout=WAIT)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (message.content_type, message.type, message.message_id) == (
        WORK_CONTENT_TYPE,
        WORK_MESSAGE_TYPE,
        "id-1",
    )
    await message.ack()


async def test_declaring_twice_is_harmless(broker: RabbitMQBroker, rail: str) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(1))
    await broker.declare_rail(rail)
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        delivery = await asyncio.wait_for(anext(deliveries), WAIT)
        assert delivery.message_id == "m0"
        await delivery.ack()


async def test_publish_to_undeclared_rail_raises(broker: RabbitMQBroker, rail: str) -> None:
    with pytest.raises(aio_pika.exceptions.PublishError):
        await broker.publish(rail, messages(2))


async def test_reject_without_requeue_dead_letters(broker: RabbitMQBroker, rail: str) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(2))
    async with aclosing(broker.consume(rail, prefetch=2)) as deliveries:
        await (await asyncio.wait_for(anext(deliveries), WAIT)).reject(requeue=False)
        await (await asyncio.wait_for(anext(deliveries), WAIT)).ack()
    await eventually(lambda: broker.dead_letter_count(rail), 1)


async def test_requeue_redelivers_and_counts(broker: RabbitMQBroker, rail: str) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(1))
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        for attempt in range(3):
            delivery = await asyncio.wait_for(anext(deliveries), WAIT)
            assert (delivery.message_id, delivery.redelivered, delivery.delivery_count) == (
                "m0",
                attempt > 0,
                attempt,
            )
            if attempt < 2:
                await delivery.reject(requeue=True)
            else:
                await delivery.ack()
    assert await broker.dead_letter_count(rail) == 0


async def test_delivery_limit_dead_letters_a_poison_message(rail: str) -> None:
    assert AMQP_URL
    broker = RabbitMQBroker(AMQP_URL, delivery_limit=2)
    await broker.connect()
    try:
        await broker.declare_rail(rail)
        await broker.publish(rail, messages(1))
        async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
            # Delivered delivery_limit + 1 times, then the queue gives up on it.
            for attempt in range(3):
                delivery = await asyncio.wait_for(anext(deliveries), WAIT)
                assert delivery.delivery_count == attempt
                await delivery.reject(requeue=True)
            await eventually(lambda: broker.dead_letter_count(rail), 1)
    finally:
        await broker.close()


async def test_prefetch_limits_unacked_deliveries(broker: RabbitMQBroker, rail: str) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(10))
    async with aclosing(broker.consume(rail, prefetch=3)) as deliveries:
        held = [await asyncio.wait_for(anext(deliveries), WAIT) for _ in range(3)]
        fourth = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(0.5)
        assert not fourth.done(), "a fourth delivery arrived while three were unacked"
        await held[0].ack()
        held.append(await asyncio.wait_for(fourth, WAIT))
        assert len({d.message_id for d in held}) == 4
        for delivery in held[1:]:
            await delivery.ack()


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl to drop a connection")
async def test_consuming_survives_a_dropped_connection(rail: str) -> None:
    assert AMQP_URL
    name = f"gpo-test-{uuid.uuid4().hex[:8]}"
    broker = RabbitMQBroker(str(URL(AMQP_URL).update_query(name=name)), publish_timeout=30.0)
    await broker.connect()
    try:
        await broker.declare_rail(rail)
        await broker.publish(rail, messages(3))
        async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
            stale = await asyncio.wait_for(anext(deliveries), WAIT)
            if not await asyncio.to_thread(close_connection_named, name):
                pytest.skip("rabbitmqctl can not reach the broker under test")
            await asyncio.sleep(0.5)
            await stale.ack()  # its channel is gone: logged and swallowed, the message comes again

            seen: set[str] = set()
            while len(seen) < 3:  # the robust connection reconnects after ~5 s and consumes again
                delivery = await asyncio.wait_for(anext(deliveries), 30)
                seen.add(delivery.message_id)
                await delivery.ack()
            assert seen == {"m0", "m1", "m2"}

            await broker.publish(rail, [OutgoingMessage(b"after", "after")])
            delivery = await asyncio.wait_for(anext(deliveries), WAIT)
            assert delivery.message_id == "after"
            await delivery.ack()
    finally:
        await broker.close()


async def test_close_ends_consumers(rail: str) -> None:
    assert AMQP_URL
    broker = RabbitMQBroker(AMQP_URL)
    await broker.connect()
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        waiting = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(0.5)  # consuming by now
        await broker.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, WAIT)
