"""Background duties that keep every payment visible: the stuck-payment sweeper and the dead-letter
recorder. Both are safe with any number of orchestrator replicas (the sweeper's rows are claimed with
SKIP LOCKED; a dead letter is consumed by one replica only)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from google.protobuf.message import DecodeError
from gpo.v1 import rail_pb2

from gpo_kernel.queueing.base import Broker, Delivery
from gpo_server.stopping import sleep_unless_stopped
from gpo_server.storage.store import Store, WorkBuilder

log = logging.getLogger(__name__)


class StuckPaymentSweeper:
    """SENT payments that nobody holds and that waited past `stuck_after_s` get a verify-only chunk: their
    sidecar asks the rail and reports what it knows, without executing. After `max_sweeps` such rounds
    without an answer, the payment is marked for an operator's attention."""

    def __init__(
        self,
        store: Store,
        build: WorkBuilder,
        on_work: Callable[[], None],
        *,
        stuck_after_s: float,
        max_sweeps: int,
        interval_s: float,
    ) -> None:
        self.store = store
        self.build = build
        self.on_work = on_work
        self.stuck_after_s = stuck_after_s
        self.max_sweeps = max_sweeps
        self.interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                found = await self.store.sweep_stuck(self.stuck_after_s, self.max_sweeps, self.build)
                if found:
                    log.warning(
                        "sweeper: %d payments SENT for over %.0fs queued for a rail look-up",
                        found,
                        self.stuck_after_s,
                    )
                    self.on_work()
            except Exception:
                log.exception("sweeper round failed; trying again next round")
            await sleep_unless_stopped(stop, self.interval_s)


class DeadLetterRecorder:
    """Moves each rail's dead letters into the database, where the API lists them, and re-drives what
    they carried: payments no claim ever took go out again with their keys, in new work held back
    `redrive_after_s` (doubled each time), at most `max_redrives` times; what cannot be re-driven is
    flagged for attention (SENT payments are then the sweeper's). The message is acked only after that
    commit. An undecodable message names no payment, so it is recorded once and never re-driven."""

    def __init__(
        self,
        store: Store,
        broker: Broker,
        rail: str,
        *,
        build: WorkBuilder | None = None,
        on_work: Callable[[], None] = lambda: None,
        max_redrives: int = 3,
        redrive_after_s: float = 60.0,
    ) -> None:
        self.store = store
        self.broker = broker
        self.rail = rail
        self.build = build
        self.on_work = on_work
        self.max_redrives = max_redrives
        self.redrive_after_s = redrive_after_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            consumer = asyncio.create_task(self._consume())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([consumer, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                consumer.cancel()  # nothing is lost: an unacked dead letter stays in its queue
                await asyncio.gather(consumer, return_exceptions=True)
                return
            if (error := consumer.exception()) is not None:
                log.error("dead-letter recorder for rail %s failed (%r); restarting", self.rail, error)
                await sleep_unless_stopped(stop, 5)

    async def _consume(self) -> None:
        async for delivery in self.broker.consume_dead_letters(self.rail, prefetch=16):
            await self.record(delivery)

    async def record(self, delivery: Delivery) -> None:
        try:
            chunk = rail_pb2.WorkChunk.FromString(delivery.body)
            batch_uid = chunk.batch.removeprefix("batches/")
            numbers = [item.payment_number for item in chunk.items]
            chunk_id = chunk.chunk_id
        except DecodeError:
            batch_uid, numbers, chunk_id = "", [], delivery.message_id
        reason = (delivery.death_reason or "unknown")[:128]
        chunk_id = chunk_id[:128]  # a forged or garbled message names what it likes: DeadLetter bounds it
        outcome = await self.store.record_dead_letter(
            self.rail,
            chunk_id,
            batch_uid,
            numbers,
            reason,
            delivery.body,
            redrive=self.build,
            max_redrives=self.max_redrives,
            redrive_after_s=self.redrive_after_s,
        )
        log.error(
            "rail %s: work chunk %s was dead-lettered (%s): %d payments",
            self.rail,
            chunk_id,
            reason,
            len(numbers),
        )
        if outcome.redriven:
            log.warning(
                "rail %s: %d never-claimed payments of dead-lettered chunk %s sent again with their keys",
                self.rail,
                outcome.redriven,
                chunk_id,
            )
            self.on_work()
        if outcome.exhausted:
            log.error(
                "rail %s: %d payments of dead-lettered chunk %s were sent again %d times already: they"
                " need attention (not re-driven again)",
                self.rail,
                outcome.exhausted,
                chunk_id,
                self.max_redrives,
            )
        await delivery.ack()


class EmptyBatchExpirer:
    """UPLOADING batches that never received a payment (an upload that failed before its first chunk, or a
    client that only sent a header) are listed like any batch (`gpo batches --state uploading --empty`)
    and deleted once they have not changed for `expire_after_s`, which frees their request ids."""

    def __init__(self, store: Store, *, expire_after_s: float, interval_s: float) -> None:
        self.store = store
        self.expire_after_s = expire_after_s
        self.interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                for uid in await self.store.expire_empty_uploads(self.expire_after_s):
                    log.info(
                        "batch %s expired: UPLOADING with no payment for over %.0fs", uid, self.expire_after_s
                    )
            except Exception:
                log.exception("empty batch expiry failed; trying again next round")
            await sleep_unless_stopped(stop, self.interval_s)
