"""The broker interface. Work for a rail travels as chunks on that rail's durable queue.

Implementations: rabbitmq.RabbitMQBroker (production and the tests that matter) and
memory.MemoryBroker (the embedded default, in-process, nothing durable beyond the database outbox).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field

WORK_CONTENT_TYPE = "application/x-protobuf"
WORK_MESSAGE_TYPE = "gpo.v1.WorkChunk"


def queue_name(rail: str) -> str:
    """The work queue of a rail; its dead-letter queue is this name plus ".dead"."""
    return f"gpo.rail.{rail}"


def dead_letter_queue_name(rail: str) -> str:
    return f"{queue_name(rail)}.dead"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    body: bytes
    message_id: str
    type: str = WORK_MESSAGE_TYPE
    # Application headers, e.g. the chunk's W3C trace context (traceparent); empty when tracing is off.
    headers: Mapping[str, str] = field(default_factory=dict)


class Delivery(abc.ABC):
    """One delivered message. Exactly one of ack / reject must be called."""

    body: bytes
    message_id: str
    redelivered: bool
    # How many times this message was delivered before this time (0 on first delivery), where known.
    delivery_count: int
    # Dead letters only: why the broker dead-lettered it ("rejected", "delivery_limit", ...).
    death_reason: str = ""
    # The application headers it was published with (values as the broker gives them back).
    headers: Mapping[str, object] = {}

    @abc.abstractmethod
    async def ack(self) -> None:
        """The work is done and its results are durable elsewhere: forget the message."""

    @abc.abstractmethod
    async def reject(self, requeue: bool) -> None:
        """requeue=True: deliver again later. requeue=False: move it to the rail's dead-letter queue."""

    def gone(self) -> bool:
        """True once the channel that delivered it has closed: the broker has requeued the message and
        may be giving it to another consumer, so whoever holds it must start no new work for it."""
        return False


class Broker(abc.ABC):
    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def declare_rail(self, rail: str) -> None:
        """Creates, if missing, the rail's durable quorum queue and its dead-letter queue."""

    @abc.abstractmethod
    async def publish(self, rail: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publishes persistent messages; returns only once the broker confirmed every one of them.

        Raises an exception if any message was not confirmed; the caller then publishes again (consumers
        see the same message_id twice at worst, which the sidecar contract tolerates).
        """

    @abc.abstractmethod
    def consume(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        """Yields deliveries from the rail's queue, at most `prefetch` unacknowledged at once. Close it
        (aclose(), contextlib.aclosing) to stop consuming: what it still held is delivered again."""

    @abc.abstractmethod
    def consume_dead_letters(self, rail: str, prefetch: int) -> AsyncGenerator[Delivery, None]:
        """Yields messages from the rail's dead-letter queue, each with its death_reason."""

    @abc.abstractmethod
    async def dead_letter_count(self, rail: str) -> int:
        """How many messages wait in the rail's dead-letter queue."""

    async def queue_depth(self, rail: str) -> int | None:
        """How many messages are ready in the rail's work queue; None where the broker cannot tell."""
        return None
