"""MemoryBroker: the same behaviours the RabbitMQ integration tests check, in process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress

import pytest

from gpo_kernel.queueing.base import OutgoingMessage
from gpo_kernel.queueing.memory import MemoryBroker

RAIL = "sim"
WAIT = 2.0


def messages(n: int) -> list[OutgoingMessage]:
    return [OutgoingMessage(f"chunk {i}".encode(), f"m{i}") for i in range(n)]


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker()
    await broker.connect()
    await broker.declare_rail(RAIL)
    yield broker
    await broker.close()


async def test_publish_then_consume_everything(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(200))
    seen: dict[str, bytes] = {}
    async with aclosing(broker.consume(RAIL, prefetch=20)) as deliveries:
        async for delivery in deliveries:
            assert not delivery.redelivered and delivery.delivery_count == 0
            seen[delivery.message_id] = delivery.body
            await delivery.ack()
            if len(seen) == 200:
                break
    assert seen == {m.message_id: m.body for m in messages(200)}
    assert await broker.dead_letter_count(RAIL) == 0


async def test_declaring_twice_is_harmless(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(1))
    await broker.declare_rail(RAIL)
    async with aclosing(broker.consume(RAIL, prefetch=1)) as deliveries:
        delivery = await asyncio.wait_for(anext(deliveries), WAIT)
        assert delivery.message_id == "m0"
        await delivery.ack()


async def test_publish_to_undeclared_rail_raises(broker: MemoryBroker) -> None:
    with pytest.raises(LookupError):
        await broker.publish("nowhere", messages(1))


async def test_reject_without_requeue_dead_letters(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(2))
    async with aclosing(broker.consume(RAIL, prefetch=2)) as deliveries:
        await (await asyncio.wait_for(anext(deliveries), WAIT)).reject(requeue=False)
        await (await asyncio.wait_for(anext(deliveries), WAIT)).ack()
    assert await broker.dead_letter_count(RAIL) == 1


async def test_requeue_redelivers_and_counts(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(1))
    async with aclosing(broker.consume(RAIL, prefetch=1)) as deliveries:
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
    assert await broker.dead_letter_count(RAIL) == 0


async def test_delivery_limit_dead_letters_a_poison_message() -> None:
    broker = MemoryBroker(delivery_limit=2)
    await broker.declare_rail(RAIL)
    await broker.publish(RAIL, messages(1))
    async with aclosing(broker.consume(RAIL, prefetch=1)) as deliveries:
        # Delivered delivery_limit + 1 times (as a quorum queue does), then dead-lettered.
        for attempt in range(3):
            delivery = await asyncio.wait_for(anext(deliveries), WAIT)
            assert delivery.delivery_count == attempt
            await delivery.reject(requeue=True)
        assert await broker.dead_letter_count(RAIL) == 1
        nothing = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(0.05)
        assert not nothing.done()
        nothing.cancel()
        with suppress(asyncio.CancelledError):
            await nothing


async def test_prefetch_limits_unacked_deliveries(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(10))
    async with aclosing(broker.consume(RAIL, prefetch=3)) as deliveries:
        held = [await asyncio.wait_for(anext(deliveries), WAIT) for _ in range(3)]
        fourth = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(0.05)
        assert not fourth.done(), "a fourth delivery arrived while three were unacked"
        await held[0].ack()
        held.append(await asyncio.wait_for(fourth, WAIT))
        assert len({d.message_id for d in held}) == 4
        for delivery in held[1:]:
            await delivery.ack()


async def test_prefetch_is_per_consumer(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(4))
    async with (
        aclosing(broker.consume(RAIL, prefetch=2)) as first,
        aclosing(broker.consume(RAIL, prefetch=2)) as second,
    ):
        held = [await asyncio.wait_for(anext(c), WAIT) for c in (first, first, second, second)]
        assert sorted(d.message_id for d in held) == ["m0", "m1", "m2", "m3"]
        for delivery in held:
            await delivery.ack()


async def test_closing_a_consumer_requeues_what_it_held(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(2))
    async with aclosing(broker.consume(RAIL, prefetch=2)) as deliveries:
        held = [await asyncio.wait_for(anext(deliveries), WAIT) for _ in range(2)]
    await held[0].ack()  # too late, like an ack on a closed AMQP channel: ignored

    async with aclosing(broker.consume(RAIL, prefetch=2)) as deliveries:
        again = [await asyncio.wait_for(anext(deliveries), WAIT) for _ in range(2)]
        assert sorted(d.message_id for d in again) == ["m0", "m1"]
        assert all(d.redelivered and d.delivery_count == 1 for d in again)
        for delivery in again:
            await delivery.ack()


async def test_settling_twice_raises(broker: MemoryBroker) -> None:
    await broker.publish(RAIL, messages(1))
    async with aclosing(broker.consume(RAIL, prefetch=1)) as deliveries:
        delivery = await asyncio.wait_for(anext(deliveries), WAIT)
        await delivery.ack()
        with pytest.raises(RuntimeError):
            await delivery.reject(requeue=False)


async def test_close_ends_consumers(broker: MemoryBroker) -> None:
    async with aclosing(broker.consume(RAIL, prefetch=1)) as deliveries:
        waiting = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(0)
        await broker.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, WAIT)
