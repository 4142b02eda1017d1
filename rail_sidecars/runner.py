"""The sidecar loop: take a chunk from the rail queue, claim it, execute it, report it, then ack it.

The AMQP delivery is acknowledged only after the orchestrator answered that the outcomes are
persisted. Any failure before that leaves the delivery to come again; the orchestrator then answers
VERIFY for payments already claimed, and the sidecar asks the rail (look_up) before executing them,
so a redelivered chunk never pays anybody twice. While one delivery holds a chunk's payments (its claim
lease), any other delivery of the same payments is told BUSY and waits.

A chunk is claimed only when it can be executed at once (after the rail's rate limiter and a concurrency
slot let it through), and its lease is renewed (RenewClaim, every third of the lease) while the sidecar
works on it. Once a renewal is refused, the lease runs out unrenewed, or the delivery's AMQP channel is
gone, no new rail call is started for that claim. While the orchestrator cannot be reached, a delivery is
held (not returned, so it does not count toward the queue's delivery limit) and its claim or report is
retried with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from gpo.v1 import rail_pb2, rail_pb2_grpc

from gpo_kernel import tracing
from gpo_kernel.queueing.base import Broker, Delivery
from gpo_kernel.reasons import Reason
from rail_sidecars.journal import OutcomeJournal
from rail_sidecars.metrics import MeteredRail
from rail_sidecars.rails.base import (
    FundsOutcome,
    FundsRequest,
    Outcome,
    Rail,
    RailPayment,
    RailResult,
    RetryableRailError,
    has_funds_hooks,
)
from rail_sidecars.sdk.rate import TokenBucket

log = logging.getLogger(__name__)

_OUTCOMES = {
    Outcome.SUCCEEDED: rail_pb2.RAIL_OUTCOME_SUCCEEDED,
    Outcome.FAILED: rail_pb2.RAIL_OUTCOME_FAILED,
    Outcome.REVERSED: rail_pb2.RAIL_OUTCOME_REVERSED,
}
MAX_REQUEUE_WAIT_S = 30.0
# How long a delivery is held while the orchestrator cannot take its claim or report: below RabbitMQ's
# consumer_timeout (30 minutes by default), after which the broker would close the channel.
HOLD_PATIENCE_S = 25 * 60.0
# Errors after which trying again cannot help: the delivery goes back to the queue (and, in the end, to the
# dead-letter queue).
_PERMANENT = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class ResultsReporter:
    """One ReportResults stream shared by every chunk in flight, reopened after a failure.

    The orchestrator answers requests in order, so answers are matched to callers first-in first-out.
    """

    def __init__(self, stub: rail_pb2_grpc.RailServiceStub, metadata: Sequence[tuple[str, str]]) -> None:
        self._stub = stub
        self._metadata = tuple(metadata)
        self._call: Any = None
        self._waiting: collections.deque[asyncio.Future[rail_pb2.ReportResultsResponse]] = collections.deque()
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    async def report(self, request: rail_pb2.ReportResultsRequest) -> rail_pb2.ReportResultsResponse:
        async with self._lock:
            if self._call is None:
                self._call = self._stub.ReportResults(metadata=self._metadata)
                self._waiting = collections.deque()
                self._reader = asyncio.create_task(self._read(self._call, self._waiting))
            answer: asyncio.Future[rail_pb2.ReportResultsResponse] = (
                asyncio.get_running_loop().create_future()
            )
            # Held locally: the reader may fail the stream (and clear self._call) while this write waits.
            call, waiting = self._call, self._waiting
            waiting.append(answer)
            try:
                await call.write(request)
            except Exception as exc:
                self._fail(call, waiting, exc)
                if answer.done() and not answer.cancelled():
                    answer.exception()  # this caller learns of the failure from the raise below
                raise ConnectionError(f"results stream failed: {exc}") from exc
        return await answer

    async def _read(self, call: Any, waiting: collections.deque[asyncio.Future[Any]]) -> None:
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise ConnectionError("the orchestrator closed the results stream")
                if waiting:
                    future = waiting.popleft()
                    if not future.done():
                        future.set_result(response)
        except Exception as exc:
            self._fail(call, waiting, exc)

    def _fail(self, call: Any, waiting: collections.deque[asyncio.Future[Any]], exc: BaseException) -> None:
        """Fails the callers waiting on this stream only; a newer stream's callers are untouched."""
        if self._call is call:
            self._call = None
        call.cancel()
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"results stream failed: {exc}"))

    async def close(self) -> None:
        if self._call is not None:
            try:
                await self._call.done_writing()
            finally:
                self._call.cancel()
                self._call = None


@dataclass
class _Plan:
    """What one delivery does with its chunk, decided by the claim."""

    execute: list[int] = field(default_factory=list)
    verify: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    retry_after_s: float = 0.0
    token: int = 0
    # Local monotonic time after which no rail call may start unless a renewal extended it.
    deadline: float = 0.0
    lease_s: float = 0.0  # the lease granted
    lost: bool = False  # a renewal was refused: another claim holds some of the payments
    gone: bool = False  # the delivery's channel closed: the broker gives the chunk to somebody else


class _DeliveryGone(Exception):
    """The delivery's channel closed before the claim: the broker requeued it; nothing to settle."""


class SidecarRunner:
    def __init__(
        self,
        *,
        rail_name: str,
        rail: Rail,
        broker: Broker,
        channel: grpc.aio.Channel,
        token: str,
        sidecar_name: str = "",
        prefetch: int = 8,
        concurrency: int = 0,
        rate_limit: float = 0.0,
        lease_s: float = 15.0,
        max_call_s: float = 60.0,
        execute_attempts: int = 5,
        retry_base_s: float = 0.2,
        rpc_timeout_s: float = 60.0,
        hold_patience_s: float = HOLD_PATIENCE_S,
        journal: OutcomeJournal | None = None,
        funds: bool = False,
        funds_poll_s: float = 1.0,
    ) -> None:
        self.rail_name = rail_name
        self.rail = MeteredRail(rail, rail_name)  # every rail call timed and counted for /metrics
        self.broker = broker
        self.stub = rail_pb2_grpc.RailServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.reporter = ResultsReporter(self.stub, self.metadata)
        self.sidecar_name = sidecar_name or f"{rail_name}-sidecar"
        # Claim leases are owned per (this process, chunk): a redelivery to this same process may take its
        # own lease back at once, while other processes wait for the lease to end.
        self.instance = uuid.uuid4().hex
        self.prefetch = prefetch
        # Chunks worked on at once; deliveries beyond it wait unclaimed (so no lease is spent waiting).
        self._slots = asyncio.Semaphore(concurrency or prefetch)
        # The rail's rate limit, for every rail: a chunk is claimed inside its turn (see _work).
        self._bucket = TokenBucket(rate_limit) if rate_limit > 0 else None
        self.lease_s = lease_s
        self.max_call_s = max_call_s
        self.execute_attempts = execute_attempts
        self.retry_base_s = retry_base_s
        self.rpc_timeout_s = rpc_timeout_s
        self.hold_patience_s = hold_patience_s
        # Outcomes not yet committed by the orchestrator, on local disk (replayed after a restart).
        self.journal = journal
        self.chunks_done = 0
        self._in_hand: set[str] = set()
        # Funds control (the rails file's funds_control): this sidecar blocks and releases batches' funds
        # with the bank, asking GPO for pending requests every funds_poll_s while there are none.
        if funds and not has_funds_hooks(rail):
            raise ValueError(f"rail {rail_name!r} has funds_control but its rail implements no funds hooks")
        self.funds = funds
        self.funds_poll_s = funds_poll_s
        self.funds_done = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set, then lets the chunks in hand finish (graceful shutdown)."""
        await self.broker.declare_rail(self.rail_name)
        await self.rail.start()
        in_flight: set[asyncio.Task[None]] = set()

        async def consume() -> None:
            async for delivery in self.broker.consume(self.rail_name, self.prefetch):
                if stop.is_set():
                    await delivery.reject(requeue=True)  # shutting down: leave it to another sidecar
                    continue
                task = asyncio.create_task(self.handle(delivery))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

        consumer = asyncio.create_task(consume())
        late = asyncio.create_task(self._forward_late_results())
        replay = asyncio.create_task(self._replay_journal())
        funds = asyncio.create_task(self._funds_loop(stop)) if self.funds else None
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([consumer, stopper], return_when=asyncio.FIRST_COMPLETED)
            # Finish what is in hand while the channel is still open, so its acks reach the broker.
            while in_flight:
                await asyncio.gather(*list(in_flight), return_exceptions=True)
        finally:
            consumer.cancel()
            late.cancel()
            replay.cancel()
            stopper.cancel()
            if funds is not None:
                funds.cancel()
            await asyncio.gather(consumer, late, replay, *([funds] if funds else []), return_exceptions=True)
            await self.reporter.close()
        if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
            raise consumer.exception()  # type: ignore[misc]

    async def handle(self, delivery: Delivery) -> None:
        try:
            chunk = rail_pb2.WorkChunk.FromString(delivery.body)
        except DecodeError:
            log.error("message %s is not a WorkChunk: dead-lettered", delivery.message_id)
            await delivery.reject(requeue=False)
            return
        if chunk.chunk_id in self._in_hand:
            # A duplicate of a chunk this process is working on: never work on the same payments twice.
            await asyncio.sleep(self._requeue_wait(delivery.delivery_count))
            await delivery.reject(requeue=True)
            return
        self._in_hand.add(chunk.chunk_id)
        try:
            # One span per delivered chunk, continuing the upload's trace from the message headers.
            with tracing.span(
                "gpo.sidecar.chunk",
                _chunk_attributes(chunk),
                parent=tracing.parent_from(delivery.headers),
                kind=tracing.SpanKind.CONSUMER,
            ):
                async with self._slots:
                    wait_s = await self._process(chunk, delivery)
        except _DeliveryGone:
            log.info("chunk %s: its delivery was lost with its channel before the claim", chunk.chunk_id)
            return
        except Exception as exc:
            # The chunk comes back later; this process's own lease lets it verify them at once.
            level = (
                logging.WARNING
                if isinstance(exc, grpc.aio.AioRpcError | ConnectionError | OSError)
                else logging.ERROR
            )
            log.log(
                level,
                "chunk %s not finished (%s); it will be redelivered",
                chunk.chunk_id,
                _short(exc),
                exc_info=level == logging.ERROR,
            )
            await asyncio.sleep(self._requeue_wait(delivery.delivery_count))
            await delivery.reject(requeue=True)
            return
        finally:
            self._in_hand.discard(chunk.chunk_id)
        if wait_s is None:
            await delivery.ack()
            self.chunks_done += 1
        else:
            await asyncio.sleep(wait_s)
            await delivery.reject(requeue=True)

    async def _process(self, chunk: rail_pb2.WorkChunk, delivery: Delivery) -> float | None:
        """Returns None when every payment of the chunk has a persisted outcome or needs none, else how
        long to wait before the chunk should come back."""
        items = {item.payment_number: item for item in chunk.items}
        claim_id = f"{self.instance}:{chunk.chunk_id}"
        if self._bucket is not None and not chunk.verify_only:
            # Claim in the rate limiter's turn, once the rail's rate allows the chunk, so no lease is spent
            # in this queue; only what the claim leaves to do is taken from the rail's rate.
            await self._until_gone(self._bucket.begin_turn(), delivery)
            try:
                with tracing.span("gpo.sidecar.claim", _chunk_attributes(chunk)):
                    plan = await self._claim_patiently(chunk, claim_id, list(items), delivery)
                self._bucket.take(len(plan.execute) + len(plan.verify))
            finally:
                self._bucket.end_turn()
        else:
            with tracing.span("gpo.sidecar.claim", _chunk_attributes(chunk)):
                plan = await self._claim_patiently(chunk, claim_id, list(items), delivery)
        held = set(plan.execute) | set(plan.verify)
        heartbeat = (
            asyncio.create_task(self._heartbeat(chunk, claim_id, plan, held, delivery)) if held else None
        )
        try:
            with tracing.span("gpo.sidecar.execute", _chunk_attributes(chunk)):
                request = await self._work(chunk, claim_id, plan, items)
            if request.results or request.released_payment_numbers or request.unknown_payment_numbers:
                with tracing.span("gpo.sidecar.report", _chunk_attributes(chunk)):
                    if traceparent := tracing.traceparent():
                        request.traceparent = traceparent  # the shared stream's metadata names no chunk
                    await self._report_patiently(request, chunk.chunk_id)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        answered = (
            {r.payment_number for r in request.results}
            | set(request.released_payment_numbers)
            | set(request.unknown_payment_numbers)
        )
        missing_answers = [n for n in [*plan.execute, *plan.verify] if n not in answered]
        if missing_answers:
            log.error(
                "chunk %s: the rail answered %d of %d payments",
                chunk.chunk_id,
                len(plan.execute) + len(plan.verify) - len(missing_answers),
                len(plan.execute) + len(plan.verify),
            )
            return self._requeue_wait(1)
        if request.released_payment_numbers and not chunk.verify_only:
            # Not executed here (the lease was lost or the delivery is gone): the next claim decides.
            return self._requeue_wait(1)
        if plan.busy:
            return min(plan.retry_after_s + random.uniform(0, 1), MAX_REQUEUE_WAIT_S)
        return None

    async def _work(
        self, chunk: rail_pb2.WorkChunk, claim_id: str, plan: _Plan, items: dict[int, rail_pb2.WorkItem]
    ) -> rail_pb2.ReportResultsRequest:
        """Looks up what must be verified and executes what may be, while the claim allows it."""
        results: list[RailResult] = []
        unknown: list[int] = []
        execute = list(plan.execute)
        if plan.verify:
            known = await self.rail.look_up([items[n].idempotency_key for n in plan.verify])
            results.extend(known.values())
            missing = [n for n in plan.verify if items[n].idempotency_key not in known]
            if chunk.verify_only:
                unknown = missing  # reported as unknown: GPO sends them again, as a normal chunk
            else:
                execute += missing
            log.info(
                "chunk %s: %d of %d re-claimed payments were already on the rail",
                chunk.chunk_id,
                len(known),
                len(plan.verify),
            )
        released: list[int] = []
        if execute and chunk.verify_only:
            released = execute  # not ours to execute in a verify-only sweep; the next claim decides
        elif execute:
            done, not_started = await self._execute(
                [_rail_payment(chunk.batch, items[n]) for n in execute], plan
            )
            results.extend(done)
            by_key = {items[n].idempotency_key: n for n in execute}
            released = [by_key[p.idempotency_key] for p in not_started]
            if released:
                log.warning(
                    "chunk %s: %d payments not executed: %s",
                    chunk.chunk_id,
                    len(released),
                    "the claim was lost" if plan.lost else "the delivery or the lease ended",
                )
        return _report(chunk, claim_id, plan.token, results, items, released, unknown)

    @staticmethod
    async def _until_gone(wait: Coroutine[Any, Any, None], delivery: Delivery) -> None:
        """Awaits `wait` unless the delivery's channel closes first (then _DeliveryGone): a delivery the
        broker has taken back must not keep its place in the rate limiter's queue."""
        task = asyncio.ensure_future(wait)
        try:
            while not task.done():
                await asyncio.wait([task], timeout=1.0)
                if not task.done() and delivery.gone():
                    raise _DeliveryGone()
            task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _may_call(self, plan: _Plan) -> bool:
        """Whether a new rail call may start for this claim: it still holds its lease, by its own clock."""
        return not plan.lost and not plan.gone and time.monotonic() < plan.deadline

    async def _heartbeat(
        self, chunk: rail_pb2.WorkChunk, claim_id: str, plan: _Plan, held: set[int], delivery: Delivery
    ) -> None:
        """Renews the claim every third of its lease while the chunk is worked on."""
        interval = plan.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            if not plan.gone and delivery.gone():
                plan.gone = True
                log.warning("chunk %s: its delivery's channel closed; no new rail calls", chunk.chunk_id)
            sent = time.monotonic()
            try:
                renewed = await self.stub.RenewClaim(
                    rail_pb2.RenewClaimRequest(
                        chunk_id=chunk.chunk_id,
                        batch=chunk.batch,
                        claim_id=claim_id,
                        lease_token=plan.token,
                        payment_numbers=sorted(held),
                        lease_duration=_duration(plan.lease_s),
                    ),
                    metadata=(*self.metadata, *tracing.carrier().items()),  # the chunk span's traceparent
                    timeout=max(1.0, interval),
                )
                plan.deadline = sent + renewed.lease_duration.ToTimedelta().total_seconds()
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    plan.lost = True
                    log.warning("chunk %s: lease lost (%s); no new rail calls", chunk.chunk_id, _short(exc))
                    return
                log.warning("chunk %s: lease not renewed (%s)", chunk.chunk_id, _short(exc))

    async def _claim_patiently(
        self, chunk: rail_pb2.WorkChunk, claim_id: str, numbers: list[int], delivery: Delivery
    ) -> _Plan:
        """Claims, holding the delivery through an orchestrator outage instead of returning it."""
        started = time.monotonic()
        attempt = 0
        while True:
            if delivery.gone():
                raise _DeliveryGone()
            try:
                return await self._claim(chunk, claim_id, numbers)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _PERMANENT or time.monotonic() - started > self.hold_patience_s:
                    raise
                attempt += 1
                log.warning(
                    "chunk %s: claim failed (%s); holding the delivery, attempt %d",
                    chunk.chunk_id,
                    _short(exc),
                    attempt,
                )
                await asyncio.sleep(self._hold_wait(attempt))

    async def _replay_journal(self) -> None:
        """Reports what a previous process journaled and never saw answered."""
        if self.journal is None:
            return
        pending = self.journal.pending()
        if pending:
            log.warning("reporting %d journaled reports left by the previous process", len(pending))
        for entry_id, request in pending:
            try:
                await self._report_patiently(request, request.chunk_id, journaled=entry_id)
            except Exception as exc:
                log.error("journaled report of chunk %s dropped (%s)", request.chunk_id, _short(exc))

    async def _report_patiently(
        self, request: rail_pb2.ReportResultsRequest, chunk_id: str, *, journaled: str = ""
    ) -> None:
        """Reports, holding the delivery (and the outcomes, journaled first) through an orchestrator
        outage."""
        if self.journal is not None and not journaled:
            journaled = self.journal.record(request)
        try:
            await self._report_until_answered(request, chunk_id)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, ConnectionError) else exc
            if isinstance(cause, grpc.aio.AioRpcError) and cause.code() in _PERMANENT:
                self._journal_done(journaled)  # refused for good: replaying cannot help
            raise  # otherwise it stays journaled, for the next process to report
        self._journal_done(journaled)

    def _journal_done(self, entry_id: str) -> None:
        if self.journal is not None and entry_id:
            self.journal.done(entry_id)

    async def _report_until_answered(self, request: rail_pb2.ReportResultsRequest, chunk_id: str) -> None:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                answer = await self.reporter.report(request)
                if answer.refused_payment_numbers:
                    log.warning(
                        "chunk %s: %d statements refused: another claim holds those payments now",
                        chunk_id,
                        len(answer.refused_payment_numbers),
                    )
                return
            except (grpc.aio.AioRpcError, ConnectionError, OSError) as exc:
                cause = exc.__cause__ if isinstance(exc, ConnectionError) else exc
                permanent = isinstance(cause, grpc.aio.AioRpcError) and cause.code() in _PERMANENT
                if permanent or time.monotonic() - started > self.hold_patience_s:
                    raise
                attempt += 1
                log.warning(
                    "chunk %s: outcomes not reported yet (%s); holding them and the delivery, attempt %d",
                    chunk_id,
                    _short(exc),
                    attempt,
                )
                await asyncio.sleep(self._hold_wait(attempt))

    def _hold_wait(self, attempt: int) -> float:
        return float(min(10.0, self.retry_base_s * 2.0 ** min(attempt, 8))) * random.uniform(0.5, 1.0)

    async def _claim(self, chunk: rail_pb2.WorkChunk, claim_id: str, numbers: list[int]) -> _Plan:
        sent = time.monotonic()
        claim = await self.stub.ClaimWorkChunk(
            rail_pb2.ClaimWorkChunkRequest(
                chunk_id=chunk.chunk_id,
                batch=chunk.batch,
                payment_numbers=numbers,
                sidecar=self.sidecar_name,
                claim_id=claim_id,
                lease_duration=_duration(self.lease_s),
                max_call_duration=_duration(self.max_call_s),
            ),
            metadata=(*self.metadata, *tracing.carrier().items()),  # the claim span's traceparent
            timeout=self.rpc_timeout_s,
        )
        granted = (
            claim.lease_duration.ToTimedelta().total_seconds() if claim.HasField("lease_duration") else 0
        )
        plan = _Plan(
            retry_after_s=claim.retry_after.ToTimedelta().total_seconds(),
            token=claim.lease_token,
            deadline=sent + granted,
            lease_s=granted or self.lease_s,
        )
        lists = {
            rail_pb2.CLAIM_ACTION_EXECUTE: plan.execute,
            rail_pb2.CLAIM_ACTION_VERIFY: plan.verify,
            rail_pb2.CLAIM_ACTION_BUSY: plan.busy,
        }
        for decision in claim.decisions:
            if decision.action in lists:
                lists[decision.action].append(decision.payment_number)
        return plan

    async def _execute(
        self, payments: list[RailPayment], plan: _Plan
    ) -> tuple[list[RailResult], list[RailPayment]]:
        """Executes with retries on retryable errors, each attempt only while the claim allows a new rail
        call; after the last attempt, payments the rail does not know come back as UNREACHABLE failures
        (their keys are kept for an operator's retry). Returns (results, payments never sent)."""
        pending = payments
        done: list[RailResult] = []
        last_error = ""
        for attempt in range(1, self.execute_attempts + 1):
            if not self._may_call(plan):
                return done, pending
            try:
                # A call is abandoned after max_call_s: by then, by the rail's contract, it can no longer
                # take effect, so the look-up below is conclusive.
                return [*done, *(await asyncio.wait_for(self.rail.execute(pending), self.max_call_s))], []
            except (RetryableRailError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    exc = RetryableRailError(f"no answer within max_call_s={self.max_call_s:g}")
                log.warning(
                    "rail %s: retryable error (%s), attempt %d of %d",
                    self.rail_name,
                    exc,
                    attempt,
                    self.execute_attempts,
                )
                if attempt < self.execute_attempts:
                    await asyncio.sleep(self._backoff(attempt))
                # A timeout may hide an execution: ask the rail before trying again.
                known = await self.rail.look_up([p.idempotency_key for p in pending])
                done.extend(known.values())
                pending = [p for p in pending if p.idempotency_key not in known]
                if not pending:
                    return done, []
                last_error = str(exc)
        return [*done, *(_unreachable(p, last_error) for p in pending)], []

    async def _funds_loop(self, stop: asyncio.Event) -> None:
        """Funds check and block (docs/TREASURY.md): claims the rail's pending funds requests from GPO,
        asks the bank to block or release each (the bank is idempotent by block id, so a request taken
        again after a crash blocks nothing twice), and reports the answers."""
        claim_id = f"{self.instance}:funds"
        attempt = 0
        while not stop.is_set():
            try:
                claim = await self.stub.ClaimFundsBlocks(
                    rail_pb2.ClaimFundsBlocksRequest(
                        rail=self.rail_name,
                        claim_id=claim_id,
                        max_requests=20,
                        lease_duration=_duration(self.lease_s),
                    ),
                    metadata=self.metadata,
                    timeout=self.rpc_timeout_s,
                )
                attempt = 0
            except grpc.aio.AioRpcError as exc:
                attempt += 1
                log.warning("funds requests not claimed (%s); attempt %d", _short(exc), attempt)
                await _wait(stop, self._hold_wait(attempt))
                continue
            results = []
            for request in claim.requests:
                asked = FundsRequest(
                    block_id=request.block_id,
                    batch=request.batch,
                    payer_fa=request.payer_fa,
                    currency_code=request.currency_code,
                    amount=request.amount,
                )
                try:
                    if request.action == rail_pb2.FUNDS_ACTION_RELEASE:
                        answer = await self.rail.release_funds(asked)
                    else:
                        answer = await self.rail.block_funds(asked)
                except Exception as exc:
                    # Unanswered: its lease runs out and it is claimed again.
                    log.warning("funds block %s: the bank did not answer (%s)", request.block_id, _short(exc))
                    continue
                log.info("funds block %s of %s: %s", request.block_id, request.batch, answer.outcome.value)
                results.append(
                    rail_pb2.FundsResult(
                        block_id=answer.block_id,
                        outcome=_FUNDS_OUTCOMES[answer.outcome],
                        reason_message=answer.message[:1024],
                        bank_reference=answer.bank_reference[:256],
                    )
                )
            if results:
                await self._report_funds(claim_id, results, stop)
            if not claim.requests:
                await _wait(stop, self.funds_poll_s)

    async def _report_funds(
        self, claim_id: str, results: list[rail_pb2.FundsResult], stop: asyncio.Event
    ) -> None:
        """Reports the bank's answers until GPO has them, or gives up at shutdown or after a permanent
        error: the requests then come again once their lease ends, and the bank answers the same."""
        attempt = 0
        while True:
            try:
                await self.stub.ReportFundsBlocks(
                    rail_pb2.ReportFundsBlocksRequest(
                        rail=self.rail_name, claim_id=claim_id, results=results
                    ),
                    metadata=self.metadata,
                    timeout=self.rpc_timeout_s,
                )
                self.funds_done += len(results)
                return
            except grpc.aio.AioRpcError as exc:
                attempt += 1
                if exc.code() in _PERMANENT or stop.is_set():
                    log.error("funds results refused (%s)", _short(exc))
                    return
                log.warning("funds results not reported yet (%s); attempt %d", _short(exc), attempt)
                await asyncio.sleep(self._hold_wait(attempt))

    async def _forward_late_results(self) -> None:
        """Reports outcomes the rail learns after the fact (returns), whenever they come."""
        async for result in self.rail.late_results():
            request = rail_pb2.ReportResultsRequest(batch=result.batch)
            request.results.append(_result_message(result.payment_number, result))
            while True:
                try:
                    await self.reporter.report(request)
                    break
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                        # GPO refuses it for good (e.g. an unknown batch): retrying cannot help.
                        log.error("late result for %s refused: %s", result.idempotency_key, _short(exc))
                        break
                    log.warning("late result not reported yet (%s); retrying", _short(exc))
                    await asyncio.sleep(self._backoff(3))
                except Exception as exc:
                    log.warning("late result not reported yet (%s); retrying", _short(exc))
                    await asyncio.sleep(self._backoff(3))

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, self.retry_base_s * 2 ** min(attempt, 8))

    def _requeue_wait(self, delivery_count: int) -> float:
        """Grows with each redelivery, so an outage of the orchestrator does not burn the delivery limit."""
        ceiling = min(MAX_REQUEUE_WAIT_S, self.retry_base_s * 2.0 ** min(delivery_count + 1, 10))
        return ceiling * random.uniform(0.5, 1.0)


_FUNDS_OUTCOMES = {
    FundsOutcome.BLOCKED: rail_pb2.FUNDS_OUTCOME_BLOCKED,
    FundsOutcome.INSUFFICIENT: rail_pb2.FUNDS_OUTCOME_INSUFFICIENT,
    FundsOutcome.RELEASED: rail_pb2.FUNDS_OUTCOME_RELEASED,
}


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps `seconds`, or less if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _chunk_attributes(chunk: rail_pb2.WorkChunk) -> dict[str, str | int]:
    """What a chunk's spans say about it: ids and a count, never payment data."""
    return {"gpo.batch": chunk.batch, "gpo.chunk_id": chunk.chunk_id, "gpo.payments": len(chunk.items)}


def _rail_payment(batch: str, item: rail_pb2.WorkItem) -> RailPayment:
    return RailPayment(
        idempotency_key=item.idempotency_key,
        batch=batch,
        payment_number=item.payment_number,
        reference_id=item.reference_id,
        payer_fa=item.payer_fa,
        payee_fa=item.payee_fa,
        amount=item.amount,
        currency_code=item.currency_code,
        payee_name=item.payee_name,
        note=item.note,
        purpose=item.purpose,
    )


def _unreachable(payment: RailPayment, error: str) -> RailResult:
    return RailResult(
        payment.idempotency_key,
        Outcome.FAILED,
        Reason.RAIL_UNREACHABLE,
        error[:500],
        "",
        payment.batch,
        payment.payment_number,
    )


def _result_message(number: int, r: RailResult) -> rail_pb2.PaymentResult:
    outcome = _OUTCOMES[r.outcome]
    if r.outcome is Outcome.FAILED and r.reason_code == Reason.RAIL_UNREACHABLE:
        outcome = rail_pb2.RAIL_OUTCOME_UNREACHABLE
    return rail_pb2.PaymentResult(
        payment_number=number,
        idempotency_key=r.idempotency_key,
        outcome=outcome,
        reason_code=r.reason_code,
        reason_message=r.reason_message,
        rail_reference=r.rail_reference,
        rail_executions=r.executions,
    )


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(dt.timedelta(seconds=seconds))
    return value


def _report(
    chunk: rail_pb2.WorkChunk,
    claim_id: str,
    token: int,
    results: list[RailResult],
    items: dict[int, rail_pb2.WorkItem],
    released: list[int],
    unknown: list[int],
) -> rail_pb2.ReportResultsRequest:
    by_key = {item.idempotency_key: n for n, item in items.items()}
    return rail_pb2.ReportResultsRequest(
        chunk_id=chunk.chunk_id,
        batch=chunk.batch,
        claim_id=claim_id,
        lease_token=token,
        results=[
            _result_message(by_key[r.idempotency_key], r) for r in results if r.idempotency_key in by_key
        ],
        released_payment_numbers=released,
        unknown_payment_numbers=unknown,
    )


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
