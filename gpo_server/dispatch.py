"""The outbox relay: publishes committed work chunks to their rail queues, then marks them queued.

A chunk is marked published (and its payments QUEUED) only after the broker confirmed it, so a crash
between the two publishes it again on restart: a sidecar may see a chunk twice, never zero times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from gpo.v1 import rail_pb2

from gpo_kernel import tracing
from gpo_kernel.queueing.base import Broker, OutgoingMessage
from gpo_server.observability import metrics
from gpo_server.stopping import sleep_unless_stopped
from gpo_server.storage.store import PublishableChunk, Store

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self, store: Store, broker: Broker, *, poll_interval_s: float = 0.25, limit: int = 8
    ) -> None:
        self.store = store
        self.broker = broker
        self.poll_interval_s = poll_interval_s
        self.limit = limit
        self._wake = asyncio.Event()
        self._declared: set[str] = set()

    def wake(self) -> None:
        """Called when an upload completes, so its work goes out without waiting for the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                published = await self.publish_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("outbox relay: publishing failed (attempt %d); retrying", failures)
                published = 0
                await sleep_unless_stopped(stop, min(0.5 * 2**failures, 15.0))
                continue
            if published == 0:
                self._wake.clear()
                await _wait_any(stop, self._wake, self.poll_interval_s)

    async def publish_once(self) -> int:
        """Publishes one round of pending chunks; returns how many."""
        async with self.store.publishing(self.limit) as (chunks, mark_published):
            if not chunks:
                return 0
            messages = {c.chunk_id: rail_pb2.WorkChunk.FromString(c.payload) for c in chunks}
            by_rail: dict[str, list[PublishableChunk]] = defaultdict(list)
            for chunk in chunks:
                by_rail[chunk.rail].append(chunk)
            with contextlib.ExitStack() as spans:
                for rail, rail_chunks in by_rail.items():
                    if rail not in self._declared:
                        await self.broker.declare_rail(rail)
                        self._declared.add(rail)
                    outgoing = [
                        OutgoingMessage(
                            c.payload, c.chunk_id, headers=_publish_span(spans, c, messages[c.chunk_id])
                        )
                        for c in rail_chunks
                    ]
                    await self.broker.publish(rail, outgoing)
                    metrics.PUBLISHED_CHUNKS.labels(rail).inc(len(rail_chunks))
            await mark_published(
                [(c, [item.payment_number for item in messages[c.chunk_id].items]) for c in chunks]
            )
        return len(chunks)


def _publish_span(
    spans: contextlib.ExitStack, chunk: PublishableChunk, message: rail_pb2.WorkChunk
) -> dict[str, str]:
    """Opens the chunk's publish span (until its publish is confirmed), a child of the upload that produced
    it, and returns the headers that carry it to the sidecar; {} when tracing is off."""
    if not tracing.enabled():
        return {}
    span, headers = tracing.start_span(
        "gpo.outbox.publish",
        {"gpo.batch": message.batch, "gpo.chunk_id": chunk.chunk_id, "gpo.rail": chunk.rail},
        parent=tracing.parent_from({"traceparent": chunk.trace_context or ""}),
        kind=tracing.SpanKind.PRODUCER,
    )
    spans.callback(span.end)
    return headers


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
