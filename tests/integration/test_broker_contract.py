"""The Broker contract (gpo_kernel/queueing/base.py), one suite run against every implementation:
MemoryBroker in process and RabbitMQBroker against a real RabbitMQ (GPO_TEST_AMQP_URL, e.g.
amqp://guest:guest@127.0.0.1:5672/). What only one implementation can show (RabbitMQ's message properties,
a dropped connection) is tested for that one alone, at the end."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass

import aio_pika
import pytest
from yarl import URL

from gpo_kernel.queueing.base import (
    WORK_CONTENT_TYPE,
    WORK_MESSAGE_TYPE,
    Broker,
    OutgoingMessage,
    dead_letter_queue_name,
    queue_name,
)
from gpo_kernel.queueing.memory import MemoryBroker
from gpo_kernel.queueing.rabbitmq import RabbitMQBroker
from tests.support.rabbitmq import close_connection_named

AMQP_URL = os.environ.get("GPO_TEST_AMQP_URL", "")
# scripts/test.sh sets it from services.sh: its absence is a broken setup, so the RabbitMQ cases fail.
NO_RABBITMQ = "GPO_TEST_AMQP_URL is not set (run scripts/services.sh for a local RabbitMQ)"


@dataclass(frozen=True)
class Implementation:
    name: str
    make: Callable[[int | None], Broker]  # delivery_limit, None for the default
    # What publishing to a rail never declared raises; what settling a delivery a second time raises.
    undeclared: type[Exception]
    settled_twice: type[Exception]
    # How long to wait for a delivery; how long to watch that one does not arrive.
    wait: float
    quiet: float


def _memory(delivery_limit: int | None) -> Broker:
    return MemoryBroker() if delivery_limit is None else MemoryBroker(delivery_limit=delivery_limit)


def _rabbitmq(delivery_limit: int | None) -> Broker:
    if delivery_limit is None:
        return RabbitMQBroker(AMQP_URL, publish_timeout=10.0)
    return RabbitMQBroker(AMQP_URL, publish_timeout=10.0, delivery_limit=delivery_limit)


MEMORY = Implementation("memory", _memory, LookupError, RuntimeError, wait=2.0, quiet=0.05)
RABBITMQ = Implementation(
    "rabbitmq",
    _rabbitmq,
    aio_pika.exceptions.PublishError,
    aio_pika.exceptions.MessageProcessError,
    # Generous waits: a quorum queue commits through Raft.
    wait=10.0,
    quiet=0.5,
)


def messages(n: int) -> list[OutgoingMessage]:
    return [OutgoingMessage(f"chunk {i}".encode(), f"m{i}") for i in range(n)]


async def eventually(probe: Callable[[], Awaitable[int]], expected: int, wait: float) -> None:
    """Dead-lettering may be asynchronous (RabbitMQ): wait for the count to reach `expected`."""
    for _ in range(int(wait / 0.05)):
        if await probe() == expected:
            return
        await asyncio.sleep(0.05)
    assert await probe() == expected


async def delete_queues(admin: aio_pika.abc.AbstractChannel, rail: str) -> None:
    await admin.queue_delete(queue_name(rail))
    await admin.queue_delete(dead_letter_queue_name(rail))


@pytest.fixture(scope="module")
async def admin() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    if not AMQP_URL:
        pytest.fail(NO_RABBITMQ)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        yield await connection.channel()


@pytest.fixture(params=[MEMORY, pytest.param(RABBITMQ, marks=pytest.mark.rabbitmq)], ids=lambda i: i.name)
def impl(request: pytest.FixtureRequest) -> Implementation:
    implementation: Implementation = request.param
    if implementation is RABBITMQ and not AMQP_URL:
        pytest.fail(NO_RABBITMQ)
    return implementation


@pytest.fixture
async def rail(impl: Implementation) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    if impl is RABBITMQ:
        async with await aio_pika.connect(AMQP_URL) as connection:
            await delete_queues(await connection.channel(), name)


@pytest.fixture
async def broker(impl: Implementation) -> AsyncIterator[Broker]:
    broker = impl.make(None)
    await broker.connect()
    yield broker
    await broker.close()


# ---- the contract, for every implementation ----------------------------------------------------


async def test_publish_then_consume_everything(broker: Broker, rail: str) -> None:
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


async def test_declaring_twice_is_harmless(broker: Broker, rail: str, impl: Implementation) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(1))
    await broker.declare_rail(rail)
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        delivery = await asyncio.wait_for(anext(deliveries), impl.wait)
        assert delivery.message_id == "m0"
        await delivery.ack()


async def test_headers_travel_with_the_message(broker: Broker, rail: str, impl: Implementation) -> None:
    """A chunk's trace context goes as message headers; a message without headers has none of them."""
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await broker.declare_rail(rail)
    await broker.publish(
        rail,
        [OutgoingMessage(b"traced", "m0", headers={"traceparent": traceparent}), *messages(2)[1:]],
    )
    async with aclosing(broker.consume(rail, prefetch=2)) as deliveries:
        traced = await asyncio.wait_for(anext(deliveries), impl.wait)
        plain = await asyncio.wait_for(anext(deliveries), impl.wait)
        assert traced.headers.get("traceparent") in (traceparent, traceparent.encode())
        assert "traceparent" not in plain.headers
        await traced.ack()
        await plain.ack()


async def test_publish_to_undeclared_rail_raises(broker: Broker, rail: str, impl: Implementation) -> None:
    with pytest.raises(impl.undeclared):
        await broker.publish(rail, messages(2))


async def test_reject_without_requeue_dead_letters(broker: Broker, rail: str, impl: Implementation) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(2))
    async with aclosing(broker.consume(rail, prefetch=2)) as deliveries:
        await (await asyncio.wait_for(anext(deliveries), impl.wait)).reject(requeue=False)
        await (await asyncio.wait_for(anext(deliveries), impl.wait)).ack()
    await eventually(lambda: broker.dead_letter_count(rail), 1, impl.wait)


async def test_requeue_redelivers_and_counts(broker: Broker, rail: str, impl: Implementation) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(1))
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        for attempt in range(3):
            delivery = await asyncio.wait_for(anext(deliveries), impl.wait)
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


async def test_delivery_limit_dead_letters_a_poison_message(rail: str, impl: Implementation) -> None:
    broker = impl.make(2)
    await broker.connect()
    try:
        await broker.declare_rail(rail)
        await broker.publish(rail, messages(1))
        async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
            # Delivered delivery_limit + 1 times (as a quorum queue does), then dead-lettered.
            for attempt in range(3):
                delivery = await asyncio.wait_for(anext(deliveries), impl.wait)
                assert delivery.delivery_count == attempt
                await delivery.reject(requeue=True)
            await eventually(lambda: broker.dead_letter_count(rail), 1, impl.wait)
            nothing = asyncio.ensure_future(anext(deliveries))
            await asyncio.sleep(impl.quiet)
            assert not nothing.done()
            nothing.cancel()
            with suppress(asyncio.CancelledError):
                await nothing
    finally:
        await broker.close()


async def test_prefetch_limits_unacked_deliveries(broker: Broker, rail: str, impl: Implementation) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(10))
    async with aclosing(broker.consume(rail, prefetch=3)) as deliveries:
        held = [await asyncio.wait_for(anext(deliveries), impl.wait) for _ in range(3)]
        fourth = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(impl.quiet)
        assert not fourth.done(), "a fourth delivery arrived while three were unacked"
        await held[0].ack()
        held.append(await asyncio.wait_for(fourth, impl.wait))
        assert len({d.message_id for d in held}) == 4
        for delivery in held[1:]:
            await delivery.ack()


async def test_prefetch_is_per_consumer(broker: Broker, rail: str, impl: Implementation) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(4))
    async with (
        aclosing(broker.consume(rail, prefetch=2)) as first,
        aclosing(broker.consume(rail, prefetch=2)) as second,
    ):
        held = [await asyncio.wait_for(anext(c), impl.wait) for c in (first, first, second, second)]
        assert sorted(d.message_id for d in held) == ["m0", "m1", "m2", "m3"]
        for delivery in held:
            await delivery.ack()


async def test_closing_a_consumer_requeues_what_it_held(
    broker: Broker, rail: str, impl: Implementation
) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(2))
    async with aclosing(broker.consume(rail, prefetch=2)) as deliveries:
        held = [await asyncio.wait_for(anext(deliveries), impl.wait) for _ in range(2)]
    await held[0].ack()  # too late, like an ack on a closed AMQP channel: ignored

    async with aclosing(broker.consume(rail, prefetch=2)) as deliveries:
        again = [await asyncio.wait_for(anext(deliveries), impl.wait) for _ in range(2)]
        assert sorted(d.message_id for d in again) == ["m0", "m1"]
        assert all(d.redelivered and d.delivery_count == 1 for d in again)
        for delivery in again:
            await delivery.ack()


async def test_settling_twice_raises(broker: Broker, rail: str, impl: Implementation) -> None:
    await broker.declare_rail(rail)
    await broker.publish(rail, messages(1))
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        delivery = await asyncio.wait_for(anext(deliveries), impl.wait)
        await delivery.ack()
        with pytest.raises(impl.settled_twice):
            await delivery.reject(requeue=False)


async def test_close_ends_consumers(rail: str, impl: Implementation) -> None:
    broker = impl.make(None)
    await broker.connect()
    await broker.declare_rail(rail)
    async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
        waiting = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(impl.quiet)  # consuming by now
        await broker.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, impl.wait)


# ---- RabbitMQ alone ---------------------------------------------------------------------------


@pytest.fixture
async def rabbitmq_rail(admin: aio_pika.abc.AbstractChannel) -> AsyncIterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    await delete_queues(admin, name)


@pytest.mark.rabbitmq
async def test_messages_are_persistent_and_typed(
    rabbitmq_rail: str, admin: aio_pika.abc.AbstractChannel
) -> None:
    broker = RABBITMQ.make(None)
    await broker.connect()
    try:
        await broker.declare_rail(rabbitmq_rail)
        await broker.publish(rabbitmq_rail, [OutgoingMessage(b"body", "id-1")])
    finally:
        await broker.close()

    queue = await admin.get_queue(queue_name(rabbitmq_rail))
    message = await queue.get(timeout=RABBITMQ.wait)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (message.content_type, message.type, message.message_id) == (
        WORK_CONTENT_TYPE,
        WORK_MESSAGE_TYPE,
        "id-1",
    )
    await message.ack()


@pytest.mark.rabbitmq
async def test_consuming_survives_a_dropped_connection(rabbitmq_rail: str) -> None:
    rail = rabbitmq_rail
    name = f"gpo-test-{uuid.uuid4().hex[:8]}"
    broker = RabbitMQBroker(str(URL(AMQP_URL).update_query(name=name)), publish_timeout=30.0)
    await broker.connect()
    try:
        await broker.declare_rail(rail)
        await broker.publish(rail, messages(3))
        async with aclosing(broker.consume(rail, prefetch=1)) as deliveries:
            stale = await asyncio.wait_for(anext(deliveries), RABBITMQ.wait)
            if not await asyncio.to_thread(close_connection_named, name):
                pytest.fail("rabbitmqctl can not reach the broker under test")
            await asyncio.sleep(0.5)
            await stale.ack()  # its channel is gone: logged and swallowed, the message comes again

            seen: set[str] = set()
            while len(seen) < 3:  # the robust connection reconnects after ~5 s and consumes again
                delivery = await asyncio.wait_for(anext(deliveries), 30)
                seen.add(delivery.message_id)
                await delivery.ack()
            assert seen == {"m0", "m1", "m2"}

            await broker.publish(rail, [OutgoingMessage(b"after", "after")])
            delivery = await asyncio.wait_for(anext(deliveries), RABBITMQ.wait)
            assert delivery.message_id == "after"
            await delivery.ack()
    finally:
        await broker.close()
