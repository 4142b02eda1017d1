"""The sidecar loop: take a chunk from the rail queue, claim it, execute it, report it, then ack it.

The AMQP delivery is acknowledged only after the orchestrator answered that the outcomes are
persisted. Any failure before that leaves the delivery to come again; the orchestrator then answers
VERIFY for payments already claimed, and the sidecar asks the rail (look_up) before executing them,
so a redelivered chunk never pays anybody twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from gpo.v1 import rail_pb2, rail_pb2_grpc

from gpo_server.queueing.base import Broker, Delivery
from rail_sidecars.rails.base import Outcome, Rail, RailPayment, RailResult, RetryableRailError

log = logging.getLogger(__name__)

_OUTCOMES = {Outcome.SUCCEEDED: rail_pb2.RAIL_OUTCOME_SUCCEEDED, Outcome.FAILED: rail_pb2.RAIL_OUTCOME_FAILED}


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
                self._reader = asyncio.create_task(self._read(self._call))
            answer: asyncio.Future[rail_pb2.ReportResultsResponse] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiting.append(answer)
            try:
                await self._call.write(request)
            except Exception as exc:
                self._fail_all(self._call, exc)
                raise
        return await answer

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    raise ConnectionError("the orchestrator closed the results stream")
                if self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(response)
        except Exception as exc:
            self._fail_all(call, exc)

    def _fail_all(self, call: grpc.aio.StreamStreamCall, exc: BaseException) -> None:
        if self._call is call:
            self._call = None
            call.cancel()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"results stream failed: {exc}"))

    async def close(self) -> None:
        if self._call is not None:
            await self._call.done_writing()
            self._call.cancel()
            self._call = None


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
        self.prefetch = prefetch
        self.execute_attempts = execute_attempts
        self.retry_base_s = retry_base_s
        self.rpc_timeout_s = rpc_timeout_s
        self.chunks_done = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop` is set, then lets the chunks in hand finish (graceful shutdown)."""
        await self.broker.declare_rail(self.rail_name)
        await self.rail.start()
        in_flight: set[asyncio.Task[None]] = set()

        async def consume() -> None:
            async for delivery in self.broker.consume(self.rail_name, self.prefetch):
                task = asyncio.create_task(self.handle(delivery))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)

        consumer = asyncio.create_task(consume())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([consumer, stopper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            consumer.cancel()
            stopper.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
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
        try:
            complete = await self._process(chunk)
        except (grpc.aio.AioRpcError, ConnectionError, RetryableRailError, OSError) as exc:
            # The chunk comes back later; its claimed payments are then verified on the rail first.
            log.warning("chunk %s not finished (%s); it will be redelivered", chunk.chunk_id, _short(exc))
            await asyncio.sleep(self._backoff(1))
            await delivery.reject(requeue=True)
            return
        except Exception:
            log.exception("chunk %s failed unexpectedly; it will be redelivered", chunk.chunk_id)
            await asyncio.sleep(self._backoff(1))
            await delivery.reject(requeue=True)
            return
        if complete:
            await delivery.ack()
            self.chunks_done += 1
        else:
            await delivery.reject(requeue=True)

    async def _process(self, chunk: rail_pb2.WorkChunk) -> bool:
        """Returns True when every payment of the chunk has a persisted outcome or needs none."""
        items = {item.payment_number: item for item in chunk.items}
        claim = await self.stub.ClaimWorkChunk(
            rail_pb2.ClaimWorkChunkRequest(
                chunk_id=chunk.chunk_id,
                batch=chunk.batch,
                payment_numbers=list(items),
                sidecar=self.sidecar_name,
            ),
            metadata=self.metadata,
            timeout=self.rpc_timeout_s,
        )
        to_execute = [d.payment_number for d in claim.decisions if d.action == rail_pb2.CLAIM_ACTION_EXECUTE]
        to_verify = [d.payment_number for d in claim.decisions if d.action == rail_pb2.CLAIM_ACTION_VERIFY]
        results: list[RailResult] = []
        if to_verify:
            known = await self.rail.look_up([items[n].idempotency_key for n in to_verify])
            results.extend(known.values())
            to_execute += [n for n in to_verify if items[n].idempotency_key not in known]
            log.info(
                "chunk %s: %d of %d re-claimed payments were already on the rail",
                chunk.chunk_id,
                len(known),
                len(to_verify),
            )
        if to_execute:
            results.extend(await self._execute([_rail_payment(items[n]) for n in to_execute]))
        by_key = {item.idempotency_key: n for n, item in items.items()}
        outcomes = [
            rail_pb2.PaymentResult(
                payment_number=by_key[r.idempotency_key],
                idempotency_key=r.idempotency_key,
                outcome=_OUTCOMES[r.outcome],
                reason_code=r.reason_code,
                reason_message=r.reason_message,
                rail_reference=r.rail_reference,
            )
            for r in results
            if r.idempotency_key in by_key
        ]
        if outcomes:
            await self.reporter.report(
                rail_pb2.ReportResultsRequest(chunk_id=chunk.chunk_id, batch=chunk.batch, results=outcomes)
            )
        expected = len(to_execute) + len(to_verify)
        if len(outcomes) < expected:
            log.error(
                "chunk %s: the rail answered %d of %d payments", chunk.chunk_id, len(outcomes), expected
            )
            return False
        return True

    async def _execute(self, payments: list[RailPayment]) -> Sequence[RailResult]:
        for attempt in range(1, self.execute_attempts + 1):
            try:
                return await self.rail.execute(payments)
            except RetryableRailError as exc:
                if attempt == self.execute_attempts:
                    raise
                log.warning("rail %s: retryable error (%s), attempt %d", self.rail_name, exc, attempt)
                await asyncio.sleep(self._backoff(attempt))
                # A timeout may hide an execution: ask the rail before trying again.
                known = await self.rail.look_up([p.idempotency_key for p in payments])
                if known:
                    rest = [p for p in payments if p.idempotency_key not in known]
                    return [*known.values(), *(await self._execute(rest) if rest else [])]
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, self.retry_base_s * 2 ** min(attempt, 8))


def _rail_payment(item: rail_pb2.WorkItem) -> RailPayment:
    return RailPayment(
        idempotency_key=item.idempotency_key,
        reference_id=item.reference_id,
        payer_fa=item.payer_fa,
        payee_fa=item.payee_fa,
        amount=item.amount,
        currency_code=item.currency_code,
        payee_name=item.payee_name,
        note=item.note,
        purpose=item.purpose,
    )


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
