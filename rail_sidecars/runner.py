"""The sidecar loop: take a chunk from the rail queue, claim it, execute it, report it, then ack it.

The AMQP delivery is acknowledged only after the orchestrator answered that the outcomes are
persisted. Any failure before that leaves the delivery to come again; the orchestrator then answers
VERIFY for payments already claimed, and the sidecar asks the rail (look_up) before executing them,
so a redelivered chunk never pays anybody twice. While one delivery holds a chunk's payments (its claim
lease), any other delivery of the same payments is told BUSY and waits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from gpo.v1 import rail_pb2, rail_pb2_grpc

from gpo_server.queueing.base import Broker, Delivery
from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult, RetryableRailError

log = logging.getLogger(__name__)

_OUTCOMES = {
    Outcome.SUCCEEDED: rail_pb2.RAIL_OUTCOME_SUCCEEDED,
    Outcome.FAILED: rail_pb2.RAIL_OUTCOME_FAILED,
    Outcome.REVERSED: rail_pb2.RAIL_OUTCOME_REVERSED,
}
MAX_REQUEUE_WAIT_S = 30.0


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
            self._waiting.append(answer)
            try:
                await self._call.write(request)
            except Exception as exc:
                self._fail(self._call, self._waiting, exc)
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
        execute_attempts: int = 5,
        retry_base_s: float = 0.2,
        rpc_timeout_s: float = 60.0,
    ) -> None:
        self.rail_name = rail_name
        self.rail = rail
        self.broker = broker
        self.stub = rail_pb2_grpc.RailServiceStub(channel)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.reporter = ResultsReporter(self.stub, self.metadata)
        self.sidecar_name = sidecar_name or f"{rail_name}-sidecar"
        # Claim leases are owned per (this process, chunk): a redelivery to this same process may take its
        # own lease back at once, while other processes wait for the lease to end.
        self.instance = uuid.uuid4().hex
        self.prefetch = prefetch
        self.execute_attempts = execute_attempts
        self.retry_base_s = retry_base_s
        self.rpc_timeout_s = rpc_timeout_s
        self.chunks_done = 0
        self._in_hand: set[str] = set()

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
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([consumer, stopper], return_when=asyncio.FIRST_COMPLETED)
            # Finish what is in hand while the channel is still open, so its acks reach the broker.
            while in_flight:
                await asyncio.gather(*list(in_flight), return_exceptions=True)
        finally:
            consumer.cancel()
            late.cancel()
            stopper.cancel()
            await asyncio.gather(consumer, late, return_exceptions=True)
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
            wait_s = await self._process(chunk)
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

    async def _process(self, chunk: rail_pb2.WorkChunk) -> float | None:
        """Returns None when every payment of the chunk has a persisted outcome or needs none, else how
        long to wait before the chunk should come back."""
        items = {item.payment_number: item for item in chunk.items}
        claim_id = f"{self.instance}:{chunk.chunk_id}"
        plan = await self._claim(chunk, claim_id, list(items))
        results: list[RailResult] = []
        unknown: list[int] = []
        if plan.verify:
            known = await self.rail.look_up([items[n].idempotency_key for n in plan.verify])
            results.extend(known.values())
            missing = [n for n in plan.verify if items[n].idempotency_key not in known]
            if chunk.verify_only:
                unknown = missing  # the first execution may still be in flight: never execute here
            else:
                plan.execute += missing
            log.info(
                "chunk %s: %d of %d re-claimed payments were already on the rail",
                chunk.chunk_id,
                len(known),
                len(plan.verify),
            )
        released: list[int] = []
        if plan.execute and chunk.verify_only:
            released = plan.execute  # not ours to execute in a verify-only sweep; the next claim decides
        elif plan.execute:
            results.extend(await self._execute([_rail_payment(chunk.batch, items[n]) for n in plan.execute]))
        request = _report(chunk, claim_id, results, items, released, unknown)
        if request.results or released or unknown:
            await self.reporter.report(request)
        answered = {r.payment_number for r in request.results} | set(released) | set(unknown)
        missing_answers = [n for n in [*plan.execute, *plan.verify] if n not in answered]
        if missing_answers:
            log.error(
                "chunk %s: the rail answered %d of %d payments",
                chunk.chunk_id,
                len(plan.execute) + len(plan.verify) - len(missing_answers),
                len(plan.execute) + len(plan.verify),
            )
            return self._requeue_wait(1)
        if plan.busy:
            return min(plan.retry_after_s, MAX_REQUEUE_WAIT_S)
        return None

    async def _claim(self, chunk: rail_pb2.WorkChunk, claim_id: str, numbers: list[int]) -> _Plan:
        claim = await self.stub.ClaimWorkChunk(
            rail_pb2.ClaimWorkChunkRequest(
                chunk_id=chunk.chunk_id,
                batch=chunk.batch,
                payment_numbers=numbers,
                sidecar=self.sidecar_name,
                claim_id=claim_id,
            ),
            metadata=self.metadata,
            timeout=self.rpc_timeout_s,
        )
        plan = _Plan(retry_after_s=claim.retry_after.ToTimedelta().total_seconds())
        lists = {
            rail_pb2.CLAIM_ACTION_EXECUTE: plan.execute,
            rail_pb2.CLAIM_ACTION_VERIFY: plan.verify,
            rail_pb2.CLAIM_ACTION_BUSY: plan.busy,
        }
        for decision in claim.decisions:
            if decision.action in lists:
                lists[decision.action].append(decision.payment_number)
        return plan

    async def _execute(self, payments: list[RailPayment]) -> list[RailResult]:
        """Executes with retries on retryable errors; after the last attempt, payments the rail does not
        know come back as UNREACHABLE failures (their keys are kept for an operator's retry)."""
        pending = payments
        done: list[RailResult] = []
        for attempt in range(1, self.execute_attempts + 1):
            try:
                return [*done, *(await self.rail.execute(pending))]
            except RetryableRailError as exc:
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
                    return done
                last_error = str(exc)
        return [*done, *(_unreachable(p, last_error) for p in pending)]

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
        "rjct.rail.unreachable",
        error[:500],
        "",
        payment.batch,
        payment.payment_number,
    )


def _result_message(number: int, r: RailResult) -> rail_pb2.PaymentResult:
    outcome = _OUTCOMES[r.outcome]
    if r.outcome is Outcome.FAILED and r.reason_code == "rjct.rail.unreachable":
        outcome = rail_pb2.RAIL_OUTCOME_UNREACHABLE
    return rail_pb2.PaymentResult(
        payment_number=number,
        idempotency_key=r.idempotency_key,
        outcome=outcome,
        reason_code=r.reason_code,
        reason_message=r.reason_message,
        rail_reference=r.rail_reference,
    )


def _report(
    chunk: rail_pb2.WorkChunk,
    claim_id: str,
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
