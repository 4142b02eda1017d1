"""A small async client over the generated stubs, used by the CLI, the demo and the tests."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc
from gpo.v1 import resources_pb2 as res_pb
from grpc_status import rpc_status

from gpo_kernel.tls import ClientTls, channel

# Given the batch a header named, the chunks to send and the sequence of the first.
Plan = Callable[[res_pb.Batch], Awaitable[tuple[Iterable[list[api_pb.PaymentInput]], int]]]


@dataclass
class UploadResult:
    batch: res_pb.Batch
    acknowledged_chunks: int = 0
    rejected: int = 0
    rejections: list[api_pb.PaymentRejection] = field(default_factory=list)  # the first `keep_rejections`


class GpoClient:
    def __init__(
        self,
        target: str,
        token: str,
        *,
        max_message_bytes: int = 16 * 1024 * 1024,
        tls: ClientTls | None = None,
    ) -> None:
        """tls: what to trust (and, for mTLS, present); None is plaintext, for loopback only."""
        self.channel = channel(
            target,
            tls,
            [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self.stub = api_grpc.DisbursementServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),)

    async def close(self) -> None:
        await self.channel.close()

    async def upload(
        self,
        header: api_pb.BatchHeader,
        chunks: Iterable[list[api_pb.PaymentInput]] | Plan,
        *,
        on_ack: Callable[[api_pb.UploadBatchResponse], None] | None = None,
        keep_rejections: int = 1000,
        first_sequence: int = 1,
    ) -> UploadResult:
        """Streams the header, then the chunks (numbered from first_sequence) without waiting for each
        acknowledgement; gRPC flow control keeps memory bounded on both sides.

        `chunks` may instead be a plan: called with the batch the header named (new, or one this request id
        already started), it returns the chunks to send and the sequence of the first. If producing a
        chunk raises, the upload is cancelled and that exception raised: the stream never hangs on it."""
        result = UploadResult(batch=res_pb.Batch())

        def take(response: api_pb.UploadBatchResponse) -> None:
            if response.acknowledged_sequence:
                result.acknowledged_chunks += 1
                result.rejected += len(response.rejections)
                room = keep_rejections - len(result.rejections)
                if room > 0:
                    result.rejections.extend(response.rejections[:room])
            else:
                result.batch = response.batch
            if on_ack is not None:
                on_ack(response)

        call = self.stub.UploadBatch(metadata=self.metadata)
        # The header's answer comes first: a refused header (bad token, program, request_id) surfaces as its
        # own status instead of racing with chunks already in flight.
        await call.write(api_pb.UploadBatchRequest(header=header))
        first = await call.read()
        if first is grpc.aio.EOF:  # an error status raises from read(); EOF means a silent close
            raise ConnectionError("the server closed the upload without answering the header")
        take(first)
        if callable(chunks):
            try:
                chunks, first_sequence = await chunks(result.batch)
            except BaseException:
                call.cancel()
                raise
        to_send = chunks

        async def send() -> None:
            for sequence, payments in enumerate(to_send, start=first_sequence):
                await call.write(
                    api_pb.UploadBatchRequest(chunk=api_pb.PaymentChunk(sequence=sequence, payments=payments))
                )
            await call.done_writing()

        def on_sent(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                call.cancel()  # the read below ends instead of waiting for chunks that will never come

        sender = asyncio.create_task(send())
        sender.add_done_callback(on_sent)
        try:
            while (response := await call.read()) is not grpc.aio.EOF:
                take(response)
            await sender
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            if sender.done() and not sender.cancelled() and (failure := sender.exception()) is not None:
                raise failure from None
            raise
        finally:
            sender.cancel()
        return result

    async def get_batch(self, name: str) -> res_pb.Batch:
        batch: res_pb.Batch = await self.stub.GetBatch(
            api_pb.GetBatchRequest(name=name), metadata=self.metadata
        )
        return batch

    async def watch(self, name: str) -> AsyncIterator[res_pb.Batch]:
        """The batch each time it changes, until it is final. A watch the server ends as idle (the batch
        stood still for a while, WATCH_IDLE) is opened again."""
        while True:
            try:
                async for response in self.stub.WatchBatch(
                    api_pb.WatchBatchRequest(name=name), metadata=self.metadata
                ):
                    yield response.batch
                return
            except grpc.aio.AioRpcError as error:
                if error_reason(error) != "WATCH_IDLE":
                    raise

    async def payments(
        self, parent: str, filter: str = "", page_size: int = 1000
    ) -> AsyncIterator[res_pb.Payment]:
        request = api_pb.ListPaymentsRequest(parent=parent, filter=filter, page_size=page_size)
        async for payment in self._pages(self.stub.ListPayments, request, "payments"):
            yield payment

    async def batches(self, program: str = "", filter: str = "") -> AsyncIterator[res_pb.Batch]:
        """Every batch the caller may see (that `filter` selects, AIP-160), newest first."""
        request = api_pb.ListBatchesRequest(program=program, filter=filter, page_size=200)
        async for batch in self._pages(self.stub.ListBatches, request, "batches"):
            yield batch

    async def _pages(self, rpc: Any, request: Any, items: str) -> AsyncIterator[Any]:
        """Every item of a paged list (AIP-158), one page after the other."""
        while True:
            page = await rpc(request, metadata=self.metadata)
            for item in getattr(page, items):
                yield item
            if not page.next_page_token:
                return
            request.page_token = page.next_page_token

    async def status_changes(self, payment: str, page_size: int = 100) -> AsyncIterator[res_pb.StatusChange]:
        """A payment's history (its name is Payment.name), oldest first."""
        request = api_pb.ListStatusChangesRequest(parent=payment, page_size=page_size)
        async for change in self._pages(self.stub.ListStatusChanges, request, "status_changes"):
            yield change

    async def retry_failed(self, name: str, request_id: str) -> res_pb.Batch:
        batch: res_pb.Batch = await self.stub.RetryFailedPayments(
            api_pb.RetryFailedPaymentsRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return batch

    async def dead_letters(self, rail: str = "") -> AsyncIterator[res_pb.DeadLetter]:
        request = api_pb.ListDeadLettersRequest(rail=rail, page_size=1000)
        async for dead in self._pages(self.stub.ListDeadLetters, request, "dead_letters"):
            yield dead

    async def audit_events(self, batch: str = "") -> AsyncIterator[res_pb.AuditEvent]:
        """The audit trail, oldest first (operators only); of one batch when `batch` is given."""
        request = api_pb.ListAuditEventsRequest(batch=batch, page_size=1000)
        async for event in self._pages(self.stub.ListAuditEvents, request, "audit_events"):
            yield event

    async def verify_audit(self) -> api_pb.VerifyAuditTrailResponse:
        answer: api_pb.VerifyAuditTrailResponse = await self.stub.VerifyAuditTrail(
            api_pb.VerifyAuditTrailRequest(), metadata=self.metadata
        )
        return answer

    async def cancel_payment(self, name: str, request_id: str = "") -> res_pb.Payment:
        payment: res_pb.Payment = await self.stub.CancelPayment(
            api_pb.CancelPaymentRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return payment

    async def retry_payment(self, name: str, request_id: str = "") -> res_pb.Payment:
        payment: res_pb.Payment = await self.stub.RetryPayment(
            api_pb.RetryPaymentRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return payment

    async def resolve_payment(self, name: str, request_id: str = "") -> res_pb.Payment:
        payment: res_pb.Payment = await self.stub.ResolvePayment(
            api_pb.ResolvePaymentRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return payment

    async def redrive(self, name: str, request_id: str = "") -> api_pb.RedriveDeadLetterResponse:
        answer: api_pb.RedriveDeadLetterResponse = await self.stub.RedriveDeadLetter(
            api_pb.RedriveDeadLetterRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return answer

    async def report(self, name: str) -> AsyncIterator[bytes]:
        """A batch's CSV report (ExportPayments), piece by piece."""
        async for body in self.stub.ExportPayments(
            api_pb.ExportPaymentsRequest(name=name), metadata=self.metadata
        ):
            yield body.data

    async def cancel(self, name: str, request_id: str = "") -> res_pb.Batch:
        batch: res_pb.Batch = await self.stub.CancelBatch(
            api_pb.CancelBatchRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return batch

    async def approve(self, name: str, request_id: str = "") -> res_pb.Batch:
        """Approves a batch awaiting approval (an approver's token)."""
        batch: res_pb.Batch = await self.stub.ApproveBatch(
            api_pb.ApproveBatchRequest(name=name, request_id=request_id), metadata=self.metadata
        )
        return batch

    async def reject(self, name: str, reason: str, request_id: str = "") -> res_pb.Batch:
        """Rejects a batch awaiting approval, which is cancelled (an approver's token)."""
        batch: res_pb.Batch = await self.stub.RejectBatch(
            api_pb.RejectBatchRequest(name=name, reason=reason, request_id=request_id), metadata=self.metadata
        )
        return batch

    async def approval_policy(self, program: str) -> res_pb.ApprovalPolicy:
        policy: res_pb.ApprovalPolicy = await self.stub.GetApprovalPolicy(
            api_pb.GetApprovalPolicyRequest(name=f"programs/{program}/approvalPolicy"), metadata=self.metadata
        )
        return policy

    async def set_approval_policy(self, policy: res_pb.ApprovalPolicy) -> res_pb.ApprovalPolicy:
        """Replaces a program's approval policy (operators); policy.name is programs/{program}/approvalPolicy."""
        stored: res_pb.ApprovalPolicy = await self.stub.UpdateApprovalPolicy(
            api_pb.UpdateApprovalPolicyRequest(approval_policy=policy, name=policy.name),
            metadata=self.metadata,
        )
        return stored

    async def import_statement(
        self, content: bytes, format: str = "", batches: Sequence[str] = ()
    ) -> api_pb.ImportStatementResponse:
        """Imports a bank statement (camt.053 or MT940; operators and reconcilers)."""
        answer: api_pb.ImportStatementResponse = await self.stub.ImportStatement(
            api_pb.ImportStatementRequest(content=content, format=format, batches=list(batches)),
            metadata=self.metadata,
        )
        return answer

    async def reconciliation(self, name: str, list_limit: int = 0) -> res_pb.BatchReconciliation:
        """What imported statements say of batch `name` ("batches/{uuid}")."""
        answer: res_pb.BatchReconciliation = await self.stub.GetBatchReconciliation(
            api_pb.GetBatchReconciliationRequest(name=f"{name}/reconciliation", list_limit=list_limit),
            metadata=self.metadata,
        )
        return answer

    async def cycle_reconciliation(self, name: str, list_limit: int = 0) -> res_pb.CycleReconciliation:
        """What imported statements say of cycle `name` ("programs/{program}/cycles/{cycle}")."""
        answer: res_pb.CycleReconciliation = await self.stub.GetCycleReconciliation(
            api_pb.GetCycleReconciliationRequest(name=f"{name}/reconciliation", list_limit=list_limit),
            metadata=self.metadata,
        )
        return answer

    async def create_cycle(
        self,
        program: str,
        cycle_id: str,
        budgets: Mapping[str, str],
        *,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
        allow_repeat_payments: bool = False,
    ) -> res_pb.Cycle:
        """Creates a program's cycle (operators only); `budgets` are decimal strings by currency."""
        cycle = _cycle(budgets, start_time, end_time, allow_repeat_payments)
        answer: res_pb.Cycle = await self.stub.CreateCycle(
            api_pb.CreateCycleRequest(parent=f"programs/{program}", cycle_id=cycle_id, cycle=cycle),
            metadata=self.metadata,
        )
        return answer

    async def update_cycle(
        self,
        name: str,
        budgets: Mapping[str, str],
        *,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
        allow_repeat_payments: bool = False,
    ) -> res_pb.Cycle:
        """Replaces cycle `name`'s budgets and window (operators only)."""
        cycle = _cycle(budgets, start_time, end_time, allow_repeat_payments)
        answer: res_pb.Cycle = await self.stub.UpdateCycle(
            api_pb.UpdateCycleRequest(name=name, cycle=cycle), metadata=self.metadata
        )
        return answer

    async def get_cycle(self, name: str) -> res_pb.Cycle:
        """The cycle "programs/{program}/cycles/{cycle}" with its totals."""
        answer: res_pb.Cycle = await self.stub.GetCycle(
            api_pb.GetCycleRequest(name=name), metadata=self.metadata
        )
        return answer

    async def cycles(self, program: str = "-") -> AsyncIterator[res_pb.Cycle]:
        """A program's cycles ("-": of every program the caller may read), newest first."""
        request = api_pb.ListCyclesRequest(parent=f"programs/{program}", page_size=100)
        async for cycle in self._pages(self.stub.ListCycles, request, "cycles"):
            yield cycle


def error_metadata(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo metadata of a GPO error (e.g. a cycle's budget, committed and requested amounts)."""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return dict(info.metadata)
    return {}


def chunked(items: Iterable[api_pb.PaymentInput], size: int) -> Iterator[list[api_pb.PaymentInput]]:
    """Groups a stream of payments into chunks of `size` without holding more than one chunk."""
    chunk: list[api_pb.PaymentInput] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def status_counts(batch: res_pb.Batch) -> dict[str, int]:
    """Payments per status name (lower case), over every currency."""
    counts: dict[str, int] = {}
    for total in batch.totals:
        name = res_pb.PaymentStatus.Name(total.status).removeprefix("PAYMENT_STATUS_").lower()
        counts[name] = counts.get(name, 0) + total.count
    return counts


def error_reason(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a GPO error (e.g. "BATCH_NOT_FOUND"), "" when it carries none."""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def _cycle(
    budgets: Mapping[str, str],
    start_time: dt.datetime | None,
    end_time: dt.datetime | None,
    allow_repeat_payments: bool,
) -> res_pb.Cycle:
    """A Cycle message of budgets (decimal strings by currency) and an optional window."""
    cycle = res_pb.Cycle(
        budgets=[res_pb.CycleBudget(currency_code=c, amount=a) for c, a in budgets.items()],
        allow_repeat_payments=allow_repeat_payments,
    )
    if start_time is not None:
        cycle.start_time.FromDatetime(start_time.astimezone(dt.UTC))
    if end_time is not None:
        cycle.end_time.FromDatetime(end_time.astimezone(dt.UTC))
    return cycle
