"""In-process broker for the embedded default: queues in memory, for a single asyncio event loop.

Nothing here is durable (the database outbox is); otherwise it behaves like RabbitMQBroker's quorum queues:
requeues count deliveries, a message rejected without requeue or requeued more than `delivery_limit` times
goes to the rail's dead list, and a consumer never holds more than `prefetch` unsettled deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field

from gpo_kernel.queueing.base import Broker, Delivery, OutgoingMessage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Message:
    body: bytes
    message_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    deliveries: int = 0  # how many times it was handed to a consumer
    death_reason: str = ""


@dataclass(slots=True)
class _Rail:
    ready: deque[_Message] = field(default_factory=deque)
    dead: deque[_Message] = field(default_factory=deque)
    # Woken on every change a waiting consumer may care about: a publish, a requeue, a settled delivery.
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class _Consumer:
    def __init__(self, rail: _Rail) -> None:
        self.rail = rail
        self.unsettled: set[_MemoryDelivery] = set()
        self.closed = False


class _MemoryDelivery(Delivery):
    def __init__(self, broker: MemoryBroker, consumer: _Consumer, message: _Message) -> None:
        self._broker = broker
        self._consumer = consumer
        self._message = message
        self.body = message.body
        self.message_id = message.message_id
        self.headers = message.headers
        self.delivery_count = message.deliveries - 1
        self.redelivered = self.delivery_count > 0
        self.death_reason = message.death_reason

    async def ack(self) -> None:
        if self._settle():
            await self._broker._notify(self._consumer.rail)

    async def reject(self, requeue: bool) -> None:
        if self._settle():
            self._broker._return(self._consumer.rail, self._message, requeue)
            await self._broker._notify(self._consumer.rail)

    def _settle(self) -> bool:
        """False when its consumer has closed meanwhile (the message was requeued then, as RabbitMQ does)."""
        if self not in self._consumer.unsettled:
            if self._consumer.closed:
                log.warning("settling message %s after its consumer closed; it was requeued", self.message_id)
                return False
            raise RuntimeError(f"message {self.message_id} was already acked or rejected")
        self._consumer.unsettled.remove(self)
        return True


class MemoryBroker(Broker):
    def __init__(self, *, delivery_limit: int = 20) -> None:
        self._delivery_limit = delivery_limit
        self._rails: dict[str, _Rail] = {}
        self._dead_queues: dict[str, _Rail] = {}
        self._closed = False

    async def connect(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for rail in self._rails.values():
            await self._notify(rail)  # running consumers see _closed and stop

    async def declare_rail(self, rail: str) -> None:
        self._rails.setdefault(rail, _Rail())

    def _rail(self, rail: str) -> _Rail:
        try:
            return self._rails[rail]
        except KeyError:
            # Like mandatory publishing to RabbitMQ: an undeclared rail is an error, not a silent drop.
            raise LookupError(f"rail {rail!r} is not declared") from None

    async def publish(self, rail: str, messages: Sequence[OutgoingMessage]) -> None:
        queue = self._rail(rail)
        queue.ready.extend(_Message(m.body, m.message_id, m.headers) for m in messages)
        await self._notify(queue)

    def consume(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        """Close it (aclose() or contextlib.aclosing) to stop; its unsettled deliveries are then requeued."""
        return self._consume(rail, prefetch, dead=False)

    def consume_dead_letters(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        return self._consume(rail, prefetch, dead=True)

    async def _consume(self, rail: str, prefetch: int, dead: bool) -> AsyncGenerator[Delivery, None]:
        await self.declare_rail(rail)  # as RabbitMQBroker does
        queue = self._rails[rail]
        if dead:
            # The dead list is a queue of its own that consumers drain; nothing dies twice.
            queue = self._dead_queues.setdefault(rail, _Rail(ready=queue.dead))
        consumer = _Consumer(queue)
        try:
            while True:
                async with queue.changed:
                    await queue.changed.wait_for(
                        lambda: self._closed or (bool(queue.ready) and len(consumer.unsettled) < prefetch)
                    )
                    if self._closed:
                        return
                    message = queue.ready.popleft()
                message.deliveries += 1
                delivery = _MemoryDelivery(self, consumer, message)
                consumer.unsettled.add(delivery)
                yield delivery
        finally:
            # What a closing AMQP channel does to its unacked messages.
            consumer.closed = True
            for delivery in consumer.unsettled:
                self._return(queue, delivery._message, requeue=True)
            consumer.unsettled.clear()
            await self._notify(queue)

    async def dead_letter_count(self, rail: str) -> int:
        return len(self._rail(rail).dead)

    async def queue_depth(self, rail: str) -> int | None:
        return len(self._rail(rail).ready)

    def _return(self, queue: _Rail, message: _Message, requeue: bool) -> None:
        # A quorum queue dead-letters a message returned more than x-delivery-limit times.
        if requeue and message.deliveries <= self._delivery_limit:
            queue.ready.appendleft(message)
        else:
            message.death_reason = "rejected" if not requeue else "delivery_limit"
            queue.dead.append(message)
            dead_queue = next((d for d in self._dead_queues.values() if d.ready is queue.dead), None)
            if dead_queue is not None:
                asyncio.get_running_loop().create_task(self._notify(dead_queue))

    async def _notify(self, queue: _Rail) -> None:
        async with queue.changed:
            queue.changed.notify_all()
