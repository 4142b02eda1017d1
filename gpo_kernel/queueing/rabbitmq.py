"""RabbitMQ broker on aio-pika: a durable quorum queue per rail, dead-lettering to a quorum queue of its own.

Publishing goes through the default exchange straight to the rail's queue, on a channel with publisher
confirms and mandatory publishing, so a message the broker did not take is always an exception.

Across a dropped connection every call waits for the robust connection and channel to be restored and
tries again, within its timeout: a publish reports success only for confirms it received, so the relay
sees a reconnect as a slower publish, not as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustQueue,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_connection import RobustConnection
from aiormq.exceptions import (
    AMQPChannelError,
    AMQPConnectionError,
    ChannelClosed,
    ChannelInvalidStateError,
)
from yarl import URL

from gpo_kernel.queueing.base import (
    WORK_CONTENT_TYPE,
    Broker,
    Delivery,
    OutgoingMessage,
    dead_letter_queue_name,
    queue_name,
)

log = logging.getLogger(__name__)

DEAD_LETTER_EXCHANGE = "gpo.dead-letter"

# What settling a delivery raises once its channel is gone (connection lost, broker restarted).
_CHANNEL_GONE = (ChannelInvalidStateError, AMQPChannelError, AMQPConnectionError, ConnectionError)
_T = TypeVar("_T")


def _lost_with_connection(exc: BaseException) -> bool:
    """True for what a call raises when its connection or channel went away under it: worth a retry once
    restored. A channel closed by the broker for a reason of its own (a missing queue, unequal arguments,
    an access refusal: ChannelClosed's subclasses) would fail the same way again."""
    return isinstance(exc, ChannelInvalidStateError | AMQPConnectionError | ConnectionError) or (
        type(exc) is ChannelClosed
    )


def _channel_gone(message: AbstractIncomingMessage) -> bool:
    try:
        return bool(message.channel.is_closed)
    except ChannelInvalidStateError:  # what aio-pika raises for a closed channel
        return True


class _RabbitDelivery(Delivery):
    def __init__(self, message: AbstractIncomingMessage) -> None:
        self._message = message
        self.body = message.body
        self.message_id = message.message_id or ""
        self.redelivered = bool(message.redelivered)
        self.headers = message.headers or {}
        # Quorum queues count returns in x-delivery-count; the header is absent on a first delivery.
        count = (message.headers or {}).get("x-delivery-count", 0)
        self.delivery_count = count if isinstance(count, int) else 0
        reason = (message.headers or {}).get("x-first-death-reason", "")
        self.death_reason = reason.decode() if isinstance(reason, bytes) else str(reason)

    def gone(self) -> bool:
        return _channel_gone(self._message)

    async def ack(self) -> None:
        try:
            await self._message.ack()
        except _CHANNEL_GONE as exc:
            # The channel that delivered it died: the broker requeued the message and will deliver it again.
            log.warning(
                "ack of message %s lost with its channel (%r); it will be redelivered", self.message_id, exc
            )

    async def reject(self, requeue: bool) -> None:
        try:
            await self._message.reject(requeue=requeue)
        except _CHANNEL_GONE as exc:
            log.warning(
                "reject of message %s lost with its channel (%r); it will be redelivered",
                self.message_id,
                exc,
            )


class _ClusterConnection(RobustConnection):
    """A robust connection to any of a cluster's nodes: a lost connection or a failed attempt moves on to
    the next URL, so reconnecting after a node dies lands on a live one."""

    def __init__(self, urls: Sequence[str], first: int) -> None:
        self._urls = [URL(url) for url in urls]
        self._turn = first
        super().__init__(self._urls[first])

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        self._turn += 1
        await super()._on_connection_close(closing)

    # aio-pika makes every attempt, the first and each reconnection, through this name-mangled method and
    # offers no other hook to change the URL between attempts.
    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self._urls[self._turn % len(self._urls)]
        try:
            await super()._RobustConnection__connect_transport()  # type: ignore[misc]
        except BaseException:
            self._turn += 1
            raise


# An aio-pika release that renames the hook would silently stop rotating nodes: refuse to start instead.
if not hasattr(RobustConnection, "_RobustConnection__connect_transport"):
    raise ImportError("this aio-pika has no RobustConnection.__connect_transport; GPO's node rotation needs it")


def node_urls(url: str) -> list[str]:
    """GPO_AMQP_URL: one AMQP URL, or several nodes of one cluster separated by commas."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("no AMQP URL given")
    return urls


class RabbitMQBroker(Broker):
    def __init__(self, url: str, *, publish_timeout: float = 30.0, delivery_limit: int = 20) -> None:
        self._urls = node_urls(url)
        self._publish_timeout = publish_timeout
        self._delivery_limit = delivery_limit
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None  # declarations
        self._publish_channel: AbstractRobustChannel | None = None
        # Inboxes of running consumers; close() ends them with a None.
        self._inboxes: set[asyncio.Queue[AbstractIncomingMessage | None]] = set()
        self._closing = False

    async def connect(self) -> None:
        # A robust connection reconnects by itself and restores channels, qos, queues and consumers.
        self._closing = False
        self._connection = await self._connect_any()
        self._channel = await self._connection.channel()
        self._publish_channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)

    async def _connect_any(self) -> AbstractRobustConnection:
        """The first node that answers; the first connection fails fast, so each node gets its turn."""
        for first in range(len(self._urls)):
            connection = _ClusterConnection(self._urls, first)
            try:
                await connection.connect()
                return connection
            except CONNECTION_EXCEPTIONS:
                if first == len(self._urls) - 1:
                    raise
                log.warning("RabbitMQ node %d of %d unreachable; trying the next", first + 1, len(self._urls))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closing = True
        for inbox in self._inboxes:
            inbox.put_nowait(None)
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._channel = self._publish_channel = None

    def _conn(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("RabbitMQBroker is not connected")
        return self._connection

    def _queue_arguments(self, rail: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": dead_letter_queue_name(rail),
            # At-least-once dead-lettering (no message lost on its way to the DLQ) requires reject-publish.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
            "x-delivery-limit": self._delivery_limit,
        }

    async def _declare(
        self, channel: AbstractRobustChannel, rail: str, *, robust: bool
    ) -> AbstractRobustQueue:
        """Declares everything a rail needs; `robust` makes the channel declare it again after a reconnect."""
        dlx = await channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True, robust=robust
        )
        dlq = await channel.declare_queue(
            dead_letter_queue_name(rail), durable=True, arguments={"x-queue-type": "quorum"}, robust=robust
        )
        await dlq.bind(dlx, routing_key=dead_letter_queue_name(rail), robust=robust)
        return await channel.declare_queue(
            queue_name(rail), durable=True, arguments=self._queue_arguments(rail), robust=robust
        )

    async def _across_reconnects(
        self, what: str, ready: Callable[[], Awaitable[None]], call: Callable[[], Awaitable[_T]]
    ) -> _T:
        """Runs `call` once the connection (and channel) is ready, again after each loss of the connection,
        until it succeeds or the publish timeout runs out (TimeoutError)."""
        attempt = 0
        async with asyncio.timeout(self._publish_timeout):
            while True:
                await ready()
                try:
                    return await call()
                except Exception as exc:
                    if not _lost_with_connection(exc) or self._closing:
                        raise
                    attempt += 1
                    log.warning("%s lost with the connection (%r); again once it is restored", what, exc)
                    # The channel may not know yet that it is gone: let its close callbacks run first.
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))

    async def declare_rail(self, rail: str) -> None:
        channel = self._channel
        if channel is None:
            raise RuntimeError("RabbitMQBroker is not connected")
        # Durable, so there is nothing to restore after a reconnect.
        await self._across_reconnects(
            f"declaring rail {rail}",
            channel.ready,
            lambda: self._declare(channel, rail, robust=False),
        )

    async def publish(self, rail: str, messages: Sequence[OutgoingMessage]) -> None:
        channel = self._publish_channel
        if channel is None:
            raise RuntimeError("RabbitMQBroker is not connected")
        routing_key = queue_name(rail)
        pending = list(messages)

        async def publish_pending() -> None:
            nonlocal pending
            exchange = channel.default_exchange
            # All in flight at once: one round trip of confirms for the whole chunk sequence, not one each.
            results = await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            m.body,
                            content_type=WORK_CONTENT_TYPE,
                            type=m.type,
                            message_id=m.message_id,
                            headers=dict(m.headers) or None,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=routing_key,
                        mandatory=True,  # an unroutable message (undeclared rail) is returned: PublishError
                    )
                    for m in pending
                ),
                return_exceptions=True,
            )
            failures = [(m, r) for m, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
            for _, error in failures:
                if not _lost_with_connection(error):
                    raise error  # refused by the broker (nack, unroutable): not a matter of connection
            if failures:
                # Only the unconfirmed go again; one that reached the queue before its confirm was lost is
                # then there twice, which consumers tolerate (same message_id).
                pending = [m for m, _ in failures]
                raise failures[0][1]

        await self._across_reconnects(
            f"publishing {len(messages)} chunk(s) to rail {rail}", channel.ready, publish_pending
        )

    def consume(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        """Close it (aclose() or contextlib.aclosing) to stop: its channel closes, unacked messages requeue.

        Survives reconnects: the robust channel consumes again and new deliveries keep arriving here.
        """
        return self._consume(rail, prefetch, dead=False)

    def consume_dead_letters(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        return self._consume(rail, prefetch, dead=True)

    async def _consume(self, rail: str, prefetch: int, dead: bool) -> AsyncGenerator[Delivery, None]:
        connection = self._conn()
        channel = await self._across_reconnects(
            f"opening a consumer channel for rail {rail}", connection.ready, connection.channel
        )
        inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._inboxes.add(inbox)
        try:

            async def start_consuming() -> None:
                await channel.set_qos(prefetch_count=prefetch)
                queue: AbstractQueue = await self._declare(channel, rail, robust=True)
                if dead:
                    queue = await channel.get_queue(dead_letter_queue_name(rail))
                await queue.consume(inbox.put)

            await self._across_reconnects(f"consuming rail {rail}", channel.ready, start_consuming)
            while (message := await inbox.get()) is not None:
                if _channel_gone(message):
                    continue  # delivered before a reconnect: the broker requeued it and will deliver it again
                yield _RabbitDelivery(message)
        finally:
            self._inboxes.discard(inbox)
            # Closing the connection closes its channels; closing one of them meanwhile is cancelled.
            if not (channel.is_closed or self._closing):
                try:
                    await channel.close()
                except Exception:
                    log.warning("closing the consumer channel of rail %s failed", rail, exc_info=True)

    async def dead_letter_count(self, rail: str) -> int:
        return await self._message_count(dead_letter_queue_name(rail))

    async def queue_depth(self, rail: str) -> int | None:
        return await self._message_count(queue_name(rail))

    async def _message_count(self, name: str) -> int:
        connection = self._conn()

        async def count() -> int:
            # A passive declare of a missing queue closes its channel, so it gets a channel of its own.
            async with connection.channel() as channel:
                queue = await channel.declare_queue(name, passive=True, robust=False)
                return queue.declaration_result.message_count or 0

        return await self._across_reconnects(f"counting messages of {name}", connection.ready, count)
