"""DisbursementService: upload batches as streams of chunks, read them, watch them, cancel them."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.api import httpbody_pb2  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import disbursement_service_pb2_grpc as api_grpc
from gpo.v1 import rail_pb2 as rail_pb
from gpo.v1 import resources_pb2 as res_pb

from gpo_server.api.audit import audit_event
from gpo_server.api.auth import Authenticator, Caller, permission_denied
from gpo_server.api.convert import (
    audit_message,
    batch_message,
    batch_uid,
    decode_page_token,
    encode_page_token,
    funds_block_message,
    payment_message,
    payment_reference,
    policy_from_message,
    policy_message,
    policy_program,
    status_change_message,
    timestamp,
    upload_change,
    webhook_delivery_message,
)
from gpo_server.api.cycles import CycleApi
from gpo_server.api.errors import (
    ApiError,
    Context,
    abort,
    abort_internal,
    handles_errors,
    invalid_argument,
    not_found,
)
from gpo_server.api.limits import StreamLimit
from gpo_server.api.reconciliation import StatementApi
from gpo_server.domain.approval import APPROVED, REJECTED
from gpo_server.domain.cycles import cycle_name
from gpo_server.domain.filters import (
    BATCH_FIELDS,
    PAYMENT_FIELDS,
    FieldSpec,
    Filter,
    InvalidFilter,
    equal_values,
    parse_filter,
)
from gpo_server.domain.money import format_amount
from gpo_server.domain.states import FINAL, BatchState, PaymentStatus, can_move_batch
from gpo_server.intake import PreparedChunk
from gpo_server.report import report_lines
from gpo_server.storage.approvals import NOT_AWAITING, ApprovalRefused
from gpo_server.storage.rail_stats import read_rail_activity
from gpo_server.storage.records import ApprovalRecord
from gpo_server.storage.store import BatchRecord, CycleRefused, NothingToDo, Store, WorkBuilder
from gpo_server.storage.webhooks import WebhookStore
from gpo_server.submission import Finished, Problem, Refused, Submissions, Upload

log = logging.getLogger(__name__)
R = TypeVar("R")


class DisbursementService(api_grpc.DisbursementServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: Store,
        submissions: Submissions,
        auth: Authenticator,
        on_upload_complete: Callable[[], None],
        build_work: WorkBuilder,
        watch_interval_s: float = 0.5,
        watch_recount_s: float = 5.0,
        watch_streams_per_caller: int = 32,
        watch_idle_s: float = 600.0,
        reply_bytes: int = 4 * 1024 * 1024,
        specs_dir: str = "",
    ) -> None:
        self.build_work = build_work
        # 500 watchers took 91% of a core: one caller may hold only so many at once.
        self.watches = StreamLimit("WatchBatch", watch_streams_per_caller)
        self.watch_idle_s = watch_idle_s
        # A page ends at this many bytes of payments as well as at page_size (metadata makes rows large).
        self.reply_bytes = reply_bytes
        self.store = store
        self.submissions = submissions
        self.webhooks = WebhookStore(store.engine)
        self.auth = auth
        self.on_upload_complete = on_upload_complete
        self.watch_interval_s = watch_interval_s
        self.watch_recount_s = watch_recount_s
        self.accepting = True
        self.statements = StatementApi(store, auth, specs_dir)
        self.cycles = CycleApi(store, auth)

    # ---- upload --------------------------------------------------------------------------------

    async def UploadBatch(
        self, request_iterator: AsyncIterator[api_pb.UploadBatchRequest], context: Context
    ) -> AsyncIterator[api_pb.UploadBatchResponse]:
        # Requests are read (and chunks validated) by one task while commits run and acknowledge in order,
        # so chunk N commits while chunk N+1 is validated, and every acknowledgement goes out as soon as its
        # chunk is durable, whether or not the client has sent the next one.
        replies: asyncio.Queue[api_pb.UploadBatchResponse | BaseException | None] = asyncio.Queue()
        reader = asyncio.create_task(self._upload(request_iterator, context, replies))
        try:
            while (reply := await replies.get()) is not None:
                if isinstance(reply, BaseException):
                    raise reply
                yield reply
        except ApiError as error:
            await abort(context, error)
        except Exception:
            await abort_internal(context)
        finally:
            reader.cancel()

    async def _upload(
        self,
        request_iterator: AsyncIterator[api_pb.UploadBatchRequest],
        context: Context,
        replies: asyncio.Queue[api_pb.UploadBatchResponse | BaseException | None],
    ) -> None:
        """Reads the stream and hands each part to the submission service; its rules, not this, decide."""
        committing: asyncio.Task[bool] | None = None
        try:
            caller = self.auth.caller(context)
            if not self.accepting:
                raise ApiError(grpc.StatusCode.UNAVAILABLE, "the server is shutting down", "SHUTTING_DOWN")
            upload: Upload | None = None
            async for request in request_iterator:
                part = request.WhichOneof("part")
                if part == "header":
                    if upload is not None:
                        raise invalid_argument("the header was sent twice", "HEADER_REPEATED")
                    upload = self.submissions.upload(await self._open_batch(caller, request.header))
                    totals = await self.store.batch_totals(upload.batch.id)
                    replies.put_nowait(api_pb.UploadBatchResponse(batch=batch_message(upload.batch, totals)))
                elif part == "chunk":
                    if upload is None:
                        raise invalid_argument("the first message must be the header", "HEADER_MISSING")
                    chunk = request.chunk
                    prepared = await upload.prepare(chunk)
                    if committing is not None and not await committing:
                        return  # it failed and said why
                    if prepared is None:  # sent again by a resuming client: acknowledge only
                        replies.put_nowait(_chunk_ack(upload.batch, chunk.sequence, upload.payment_count, []))
                        continue
                    committing = asyncio.create_task(self._commit(upload, prepared, replies))
                else:
                    raise invalid_argument("a message carries neither header nor chunk", "EMPTY_MESSAGE")
            if committing is not None and not await committing:
                return
            if upload is None:
                raise invalid_argument("the upload sent no header", "HEADER_MISSING")
            finish = await self.submissions.finish(
                upload.batch,
                audit=audit_event(caller, "batch.upload", context, request_id=upload.batch.request_id),
            )
            batch = finish.batch
            if finish.outcome is Finished.EMPTY:
                raise invalid_argument("the batch has no payments", "EMPTY_BATCH")
            if finish.outcome is Finished.MISMATCH:
                # Everything declared has arrived but does not add up: say so rather than hold silently.
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the batch holds {batch.payment_count} payments totalling "
                    f"{format_amount(batch.received_total_hundredths)}; the header declared "
                    f"{batch.expected_payment_count} totalling {format_amount(batch.expected_total_hundredths or 0)}",
                    "DECLARATION_MISMATCH",
                    metadata={"batch": f"batches/{batch.uid}"},
                )
            totals = await self.store.batch_totals(batch.id)
            replies.put_nowait(api_pb.UploadBatchResponse(batch=batch_message(batch, totals)))
            replies.put_nowait(None)
        except asyncio.CancelledError:
            # The stream ended (client gone or error answered). A commit in flight runs to its end: it is
            # all or nothing, and a resuming client learns from last_chunk_sequence whether it landed.
            raise
        except Refused as refused:
            replies.put_nowait(_refusal(refused))
        except BaseException as exc:  # handed to the replying side, which turns it into a status
            replies.put_nowait(exc)

    async def _commit(
        self,
        upload: Upload,
        prepared: PreparedChunk,
        replies: asyncio.Queue[api_pb.UploadBatchResponse | BaseException | None],
    ) -> bool:
        """Commits one chunk and queues its acknowledgement (or its error). True when it was stored."""
        try:
            outcome = await upload.commit(prepared)
        except Refused as refused:
            replies.put_nowait(_refusal(refused))
            return False
        except Exception as exc:
            replies.put_nowait(exc)
            return False
        count = outcome.batch.payment_count + outcome.stored
        replies.put_nowait(_chunk_ack(upload.batch, prepared.sequence, count, outcome.rejections))
        return True

    async def _open_batch(self, caller: Caller, header: api_pb.BatchHeader) -> BatchRecord:
        new = self.submissions.check_header(header)  # an invalid header is refused before the caller
        if caller.is_operator:
            raise permission_denied(
                "operators read, cancel and retry; uploads come from a program's own caller",
                "OPERATORS_DO_NOT_UPLOAD",
            )
        if caller.is_approver:
            raise permission_denied(
                "approvers approve or reject batches; uploads come from a program's own caller",
                "APPROVERS_DO_NOT_UPLOAD",
            )
        if not caller.may_use(header.program):
            raise permission_denied(
                f"the caller may not pay for program {header.program!r}", "PROGRAM_FORBIDDEN"
            )
        return await self.submissions.open(
            new,
            audit=audit_event(
                caller, "batch.open", request_id=header.request_id, detail={"program": header.program}
            ),
        )

    # ---- reads ---------------------------------------------------------------------------------

    async def _readable_batch(self, name: str, context: Context, field: str = "name") -> BatchRecord:
        caller = self.auth.caller(context)
        batch = await self.store.get_batch(batch_uid(name, field))
        # A batch of a program the caller may not see is reported as missing, so names do not leak.
        if batch is None or not caller.may_use(batch.program):
            raise not_found("batch", name)
        return batch

    async def _view(self, uid: str) -> res_pb.Batch:
        """The batch as it stands now, with its totals and approvals."""
        batch = await self.store.get_batch(uid)
        assert batch is not None
        return await self._message(batch)

    async def _message(self, batch: BatchRecord) -> res_pb.Batch:
        approvals = (await self.store.approvals_of([batch.id]))[batch.id] if batch.required_approvals else []
        return batch_message(batch, await self.store.batch_totals(batch.id), approvals)

    @handles_errors
    async def GetBatch(self, request: api_pb.GetBatchRequest, context: Context) -> res_pb.Batch:
        batch = await self._readable_batch(request.name, context)
        message = await self._message(batch)
        for block in await self.store.funds_blocks_of(batch.id):
            message.funds_blocks.append(funds_block_message(block))
        if batch.callback_uri and (delivery := await self.webhooks.status_of(batch.id)) is not None:
            message.webhook_delivery.CopyFrom(webhook_delivery_message(delivery))
        return message

    @handles_errors
    async def ListBatches(
        self, request: api_pb.ListBatchesRequest, context: Context
    ) -> api_pb.ListBatchesResponse:
        caller = self.auth.caller(context)
        size = _page_size(request.page_size, default=50, most=1000)
        where = _filter(request.filter, BATCH_FIELDS)
        scope = f"batches:{request.program}" + (f":{request.filter}" if request.filter else "")
        after = decode_page_token(request.page_token, scope)
        rows = await self.store.list_batches(
            programs=caller.programs, program=request.program, after_id=after, limit=size + 1, where=where
        )
        response = api_pb.ListBatchesResponse()
        approvals = await self.store.approvals_of([b.id for b in rows[:size] if b.required_approvals])
        for batch in rows[:size]:
            response.batches.append(
                batch_message(batch, await self.store.batch_totals(batch.id), approvals.get(batch.id, []))
            )
        if len(rows) > size:
            response.next_page_token = encode_page_token(rows[size - 1].id, scope)
        return response

    @handles_errors
    async def ListPayments(
        self, request: api_pb.ListPaymentsRequest, context: Context
    ) -> api_pb.ListPaymentsResponse:
        where = _filter(request.filter, PAYMENT_FIELDS)
        if request.parent == "batches/-":
            return await self._search_payments(request, where, context)
        batch = await self._readable_batch(request.parent, context, "parent")
        size = _page_size(request.page_size, default=100, most=10_000)
        scope = f"payments:{batch.uid}:{request.filter}"
        after = decode_page_token(request.page_token, scope) or 0
        response = api_pb.ListPaymentsResponse()
        room, more = self.reply_bytes, True
        # Read in slices, so neither the rows held nor the reply grows past about reply_bytes.
        while more and len(response.payments) < size and room > 0:
            want = min(_LIST_SLICE, size - len(response.payments))
            rows = await self.store.list_payments(batch.id, where=where, after_number=after, limit=want + 1)
            more = len(rows) > want
            for row in rows[:want]:
                message = payment_message(batch.uid, row)
                room -= message.ByteSize()
                if room < 0 and response.payments:
                    break  # this payment opens the next page
                response.payments.append(message)
                after = int(row.number)
            else:
                continue
            more = True
            break
        if more:
            response.next_page_token = encode_page_token(after, scope)
        return response

    async def _search_payments(
        self, request: api_pb.ListPaymentsRequest, where: Filter, context: Context
    ) -> api_pb.ListPaymentsResponse:
        """ListPayments of "batches/-" (AIP-159): the caller's programs' batches, found by reference."""
        if equal_values(where, "reference_id") is None:
            problem = 'reading across batches ("batches/-") needs a reference_id = "..." term'
            raise invalid_argument(problem, "INVALID_FILTER", [("filter", problem)])
        caller = self.auth.caller(context)
        size = _page_size(request.page_size, default=100, most=1000)
        scope = f"search:{request.filter}"
        position = decode_page_token(request.page_token, scope)
        after = divmod(position, _NUMBER_SPAN) if position is not None else None
        rows = await self.store.search_payments(
            programs=caller.programs, where=where, after=after, limit=size + 1
        )
        response = api_pb.ListPaymentsResponse(payments=[payment_message(r.uid, r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = encode_page_token(
                int(last.batch_id) * _NUMBER_SPAN + int(last.number), scope
            )
        return response

    @handles_errors
    async def ListStatusChanges(
        self, request: api_pb.ListStatusChangesRequest, context: Context
    ) -> api_pb.ListStatusChangesResponse:
        batch_name, reference = payment_reference(request.parent, "parent")
        batch = await self._readable_batch(batch_name, context, "parent")
        size = _page_size(request.page_size, default=100, most=1000)
        scope = f"changes:{request.parent}"
        after = decode_page_token(request.page_token, scope)
        # Position 0 is the upload entry, which no row holds: the first change row (or, with none, the
        # payment itself) says which status intake gave the payment, and when.
        first_page = after is None
        want = size - 1 if first_page else size
        found = await self.store.status_changes(batch.id, reference, after_id=after or 0, limit=want + 1)
        if found is None:
            raise not_found("payment", request.parent)
        payment, rows = found
        response = api_pb.ListStatusChangesResponse()
        if first_page:
            if rows:
                response.status_changes.append(upload_change(rows[0].previous_status, rows[0].previous_time))
            else:
                response.status_changes.append(
                    upload_change(
                        payment.status, payment.update_time, payment.reason_code, payment.reason_message
                    )
                )
        response.status_changes.extend(status_change_message(r) for r in rows[:want])
        if len(rows) > want:
            last = int(rows[want - 1].id) if want else 0
            response.next_page_token = encode_page_token(last, scope)
        return response

    async def WatchBatch(
        self, request: api_pb.WatchBatchRequest, context: Context
    ) -> AsyncIterator[api_pb.WatchBatchResponse]:
        try:
            caller = self.auth.caller(context)
            with self.watches.held(caller.subject):
                async for response in self._watch(request, context):
                    yield response
        except ApiError as error:
            await abort(context, error)
        except Exception:
            await abort_internal(context)

    async def _watch(
        self, request: api_pb.WatchBatchRequest, context: Context
    ) -> AsyncIterator[api_pb.WatchBatchResponse]:
        batch = await self._readable_batch(request.name, context)
        last: bytes | None = None
        changed_at = time.monotonic()
        counted_for: tuple[object, ...] | None = None  # the batch row the totals were counted at
        approvals: list[ApprovalRecord] = []
        counted_at = 0.0
        interval = self.watch_interval_s
        while True:
            # Counting a batch's payments costs the database time in proportion to the batch; 100
            # watchers of 10,000-payment batches recounting twice a second took most of it. Recount
            # when the batch row shows settlements or a new state, else at least every
            # watch_recount_s (claims move payments to SENT without touching the batch row).
            now = time.monotonic()
            seen = (batch.state, batch.payment_count, batch.unfinished_count, batch.update_time)
            if seen != counted_for or now - counted_at >= self.watch_recount_s:
                totals = await self.store.batch_totals(batch.id)
                if batch.required_approvals:
                    approvals = (await self.store.approvals_of([batch.id]))[batch.id]
                counted_for, counted_at = seen, time.monotonic()
                # A million-payment batch takes a while to count: poll so that watching costs the
                # database at most about a tenth of its time, however large the batch.
                interval = max(self.watch_interval_s, 10 * (counted_at - now))
            message = batch_message(batch, totals, approvals)
            if batch.state is BatchState.AWAITING_FUNDS:
                # Why it waits (e.g. funds.insufficient), where a watcher looks.
                for block in await self.store.funds_blocks_of(batch.id):
                    message.funds_blocks.append(funds_block_message(block))
            view = message.SerializeToString(deterministic=True)
            if view != last:
                read_time = Timestamp()
                read_time.GetCurrentTime()
                yield api_pb.WatchBatchResponse(batch=message, read_time=read_time)
                last, changed_at = view, time.monotonic()
            pending = any(t.status not in FINAL for t in totals)
            if batch.state is BatchState.COMPLETED or (batch.state is BatchState.CANCELLED and not pending):
                return
            if time.monotonic() - changed_at > self.watch_idle_s:
                # A watch of a batch that does not move holds a stream slot for nothing: it ends, and a
                # client that still wants to know watches again (GpoClient.watch does so by itself).
                raise ApiError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the batch did not change for {self.watch_idle_s:.0f} s; watch it again",
                    "WATCH_IDLE",
                )
            await asyncio.sleep(interval)
            refreshed = await self.store.get_batch(batch.uid)
            if refreshed is None:  # an empty upload that expired (GPO_EMPTY_BATCH_EXPIRY_S) while watched
                raise not_found("batch", request.name)
            batch = refreshed

    @handles_errors
    async def CancelBatch(self, request: api_pb.CancelBatchRequest, context: Context) -> res_pb.Batch:
        self._not_approver(context, "cancelling a batch")
        batch = await self._readable_batch(request.name, context)
        if can_move_batch(batch.state, BatchState.CANCELLED):
            caller = self.auth.caller(context)
            await self.store.cancel_batch(
                batch.id, audit=audit_event(caller, "batch.cancel", context, batch_uid=batch.uid)
            )
            log.info("batch %s cancelled", batch.uid)
        return await self._view(batch.uid)

    @handles_errors
    async def RetryFailedPayments(
        self, request: api_pb.RetryFailedPaymentsRequest, context: Context
    ) -> res_pb.Batch:
        # A retry gives definite failures new idempotency keys: an operator's decision, never a program's.
        if not self.auth.caller(context).is_operator:
            raise permission_denied("retrying failed payments needs the operator role", "OPERATOR_ONLY")
        batch = await self._readable_batch(request.name, context)
        if batch.state not in (BatchState.PROCESSING, BatchState.COMPLETED):
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"a batch in state {batch.state.value} cannot be retried",
                "BATCH_NOT_RETRYABLE",
            )
        retried = await _cycle_checked(
            self.store.retry_failed(
                batch.id,
                request.request_id,
                self.build_work,
                audit=audit_event(self.auth.caller(context), "batch.retry", request_id=request.request_id),
            )
        )
        if retried:
            log.info("batch %s: %d failed payments sent again", batch.uid, retried)
            self.on_upload_complete()
        return await self._view(batch.uid)

    # ---- one payment, dead letters, reports (operators; cancel and export also the batch's programs) -------

    async def _readable_payment(self, name: str, context: Context) -> tuple[BatchRecord, Any]:
        batch_name, reference = payment_reference(name, "name")
        batch = await self._readable_batch(batch_name, context, "name")
        row = await self.store.find_payment(batch.id, reference)
        if row is None:
            raise not_found("payment", name)
        return batch, row

    def _not_approver(self, context: Context, what: str) -> Caller:
        caller = self.auth.caller(context)
        if caller.is_approver:
            raise permission_denied(
                f"{what} is not an approver's: an approver rejects (RejectBatch)", "APPROVER_NOT_ALLOWED"
            )
        return caller

    def _operator(self, context: Context, what: str) -> Caller:
        caller = self.auth.caller(context)
        if not caller.is_operator:
            raise permission_denied(f"{what} needs the operator role", "OPERATOR_ONLY")
        return caller

    @handles_errors
    async def CancelPayment(self, request: api_pb.CancelPaymentRequest, context: Context) -> res_pb.Payment:
        caller = self._not_approver(context, "cancelling a payment")
        batch, row = await self._readable_payment(request.name, context)
        status = PaymentStatus(row.status)
        if status is not PaymentStatus.CANCELLED:
            audit = audit_event(
                caller,
                "payment.cancel",
                context,
                request_id=request.request_id,
                batch_uid=batch.uid,
                detail={"reference_id": row.reference_id},
            )
            if not await self.store.cancel_payment(batch.id, int(row.number), audit=audit):
                current = PaymentStatus((await self.store.get_payment(batch.id, int(row.number))).status)
                if current is not PaymentStatus.CANCELLED:
                    raise ApiError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"a {current.name} payment cannot be cancelled: only one no rail has claimed"
                        " (ACCEPTED or QUEUED)",
                        "PAYMENT_NOT_CANCELLABLE",
                    )
            log.info("batch %s: payment %d cancelled", batch.uid, row.number)
        return payment_message(batch.uid, await self.store.get_payment(batch.id, int(row.number)))

    @handles_errors
    async def RetryPayment(self, request: api_pb.RetryPaymentRequest, context: Context) -> res_pb.Payment:
        caller = self._operator(context, "retrying a payment")
        batch, row = await self._readable_payment(request.name, context)
        if batch.state not in (BatchState.PROCESSING, BatchState.COMPLETED):  # as RetryFailedPayments
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"a payment of a batch in state {batch.state.value} cannot be retried",
                "BATCH_NOT_RETRYABLE",
            )
        # The store's WHERE is the state table's (operator_sources_of): a payment not FAILED changes nothing.
        try:
            retried = await _cycle_checked(
                self.store.retry_failed(
                    batch.id,
                    request.request_id,
                    self.build_work,
                    audit=audit_event(
                        caller,
                        "payment.retry",
                        context,
                        request_id=request.request_id,
                        detail={"reference_id": row.reference_id},
                    ),
                    numbers=[int(row.number)],
                )
            )
        except NothingToDo:
            status = PaymentStatus((await self.store.get_payment(batch.id, int(row.number))).status)
            if status is PaymentStatus.FAILED:  # skipped: a later batch of the cycle pays its beneficiary
                raise ApiError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "the payment's beneficiary is paid by a later batch of its cycle, which pays each "
                    "beneficiary once",
                    "BENEFICIARY_DUPLICATE",
                    metadata={"cycle": cycle_name(batch.program, batch.cycle)},
                ) from None
            raise _not_retryable(status) from None
        if retried:
            log.info("batch %s: payment %d sent again", batch.uid, row.number)
            self.on_upload_complete()
        return payment_message(batch.uid, await self.store.get_payment(batch.id, int(row.number)))

    @handles_errors
    async def ResolvePayment(self, request: api_pb.ResolvePaymentRequest, context: Context) -> res_pb.Payment:
        caller = self._operator(context, "resolving a payment")
        batch, row = await self._readable_payment(request.name, context)
        try:
            action = await self.store.resolve_payment(
                batch.id,
                batch.uid,
                int(row.number),
                request.request_id,
                self.build_work,
                audit=audit_event(
                    caller,
                    "payment.resolve",
                    context,
                    request_id=request.request_id,
                    detail={"reference_id": row.reference_id},
                ),
            )
        except NothingToDo:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the payment is not flagged for attention",
                "PAYMENT_NOT_FLAGGED",
            ) from None
        if action in ("lookup", "redrive"):
            log.info("batch %s: payment %d resolved by %s", batch.uid, row.number, action)
            self.on_upload_complete()
        return payment_message(batch.uid, await self.store.get_payment(batch.id, int(row.number)))

    @handles_errors
    async def RedriveDeadLetter(
        self, request: api_pb.RedriveDeadLetterRequest, context: Context
    ) -> api_pb.RedriveDeadLetterResponse:
        caller = self._operator(context, "re-driving a dead letter")
        match = _DEAD_LETTER_NAME.fullmatch(request.name)
        dead = await self.store.get_dead_letter(int(match.group(1))) if match else None
        if match is None:
            raise invalid_argument(
                "name must be deadLetters/{id}",
                "INVALID_NAME",
                [("name", "not of the form deadLetters/{id}")],
            )
        if dead is None:
            raise not_found("dead letter", request.name)
        if dead.uid is None:
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the dead letter names no known batch (it could not be decoded): nothing to re-drive",
                "DEAD_LETTER_UNREADABLE",
            )
        try:
            numbers = [item.payment_number for item in rail_pb.WorkChunk.FromString(dead.payload).items]
        except DecodeError:
            numbers = []
        redriven = await self.store.redrive(
            int(dead.batch_id),
            dead.uid,
            numbers,
            request.request_id,
            self.build_work,
            audit=audit_event(
                caller,
                "deadletter.redrive",
                context,
                request_id=request.request_id,
                detail={"dead_letter": request.name, "chunk_id": dead.chunk_id},
            ),
        )
        if redriven:
            log.warning("dead letter %s: %d never-claimed payments sent again", request.name, redriven)
            self.on_upload_complete()
        return api_pb.RedriveDeadLetterResponse(
            dead_letter=_dead_letter_message(dead), redriven_count=redriven or 0
        )

    async def ExportPayments(
        self, request: api_pb.ExportPaymentsRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        try:
            batch = await self._readable_batch(request.name, context)
            after, first = 0, True
            # A slice at a time, so memory stays flat however large the batch.
            while rows := await self.store.list_payments(batch.id, after_number=after, limit=_REPORT_SLICE):
                text = report_lines(rows, batch.create_time, header=first)
                yield httpbody_pb2.HttpBody(content_type="text/csv; charset=utf-8", data=text.encode())
                after, first = int(rows[-1].number), False
            if first:
                yield httpbody_pb2.HttpBody(
                    content_type="text/csv; charset=utf-8",
                    data=report_lines([], batch.create_time, header=True).encode(),
                )
        except ApiError as error:
            await abort(context, error)
        except Exception:
            await abort_internal(context)

    @handles_errors
    async def ListAuditEvents(
        self, request: api_pb.ListAuditEventsRequest, context: Context
    ) -> api_pb.ListAuditEventsResponse:
        if not self.auth.caller(context).is_operator:
            raise permission_denied("the audit trail is for operators", "OPERATOR_ONLY")
        uid = batch_uid(request.batch, "batch") if request.batch else ""
        size = _page_size(request.page_size, default=100, most=1000)
        scope = f"audit:{uid}"
        after = decode_page_token(request.page_token, scope) or 0
        rows = await self.store.list_audit(batch_uid=uid, after_id=after, limit=size + 1)
        response = api_pb.ListAuditEventsResponse(audit_events=[audit_message(r) for r in rows[:size]])
        if len(rows) > size:
            response.next_page_token = encode_page_token(int(rows[size - 1].id), scope)
        return response

    @handles_errors
    async def VerifyAuditTrail(
        self, request: api_pb.VerifyAuditTrailRequest, context: Context
    ) -> api_pb.VerifyAuditTrailResponse:
        if not self.auth.caller(context).is_operator:
            raise permission_denied("the audit trail is for operators", "OPERATOR_ONLY")
        result = await self.store.verify_audit()
        if result.first_broken_id:
            log.error("audit trail broken at event %d: %s", result.first_broken_id, result.problem)
        return api_pb.VerifyAuditTrailResponse(
            checked_count=result.checked,
            intact=not result.first_broken_id,
            first_broken_id=result.first_broken_id,
            problem=result.problem,
        )

    @handles_errors
    async def ListDeadLetters(
        self, request: api_pb.ListDeadLettersRequest, context: Context
    ) -> api_pb.ListDeadLettersResponse:
        if not self.auth.caller(context).is_operator:
            # Dead letters may mix programs' payments: operators only.
            raise permission_denied("listing dead letters needs the operator role", "OPERATOR_ONLY")
        size = _page_size(request.page_size, default=100, most=1000)
        scope = f"dead:{request.rail}"
        before = decode_page_token(request.page_token, scope)
        rows = await self.store.list_dead_letters(request.rail, before, size + 1)
        response = api_pb.ListDeadLettersResponse()
        response.dead_letters.extend(_dead_letter_message(row) for row in rows[:size])
        if len(rows) > size:
            response.next_page_token = encode_page_token(int(rows[size - 1].id), scope)
        return response

    @handles_errors
    async def ListRailStats(
        self, request: api_pb.ListRailStatsRequest, context: Context
    ) -> api_pb.ListRailStatsResponse:
        if not self.auth.caller(context).is_operator:
            # Counts span every program's payments: operators only.
            raise permission_denied("rail statistics need the operator role", "OPERATOR_ONLY")
        if not 0 <= request.window_seconds <= _MAX_RAIL_WINDOW_S:
            raise invalid_argument(
                f"window_seconds must be between 0 (the default, {_DEFAULT_RAIL_WINDOW_S}) and {_MAX_RAIL_WINDOW_S}",
                "INVALID_WINDOW",
                [("window_seconds", f"not in 0..{_MAX_RAIL_WINDOW_S}")],
            )
        window_s = request.window_seconds or _DEFAULT_RAIL_WINDOW_S
        now = dt.datetime.now(dt.UTC)
        activity = await read_rail_activity(self.store.engine, now - dt.timedelta(seconds=window_s))
        response = api_pb.ListRailStatsResponse(window_seconds=window_s, read_time=timestamp(now))
        for rail in activity:
            reasons = sorted(rail.failure_reasons.items(), key=lambda item: (-item[1], item[0]))
            response.rail_stats.append(
                res_pb.RailStats(
                    rail=rail.rail,
                    succeeded_count=rail.succeeded,
                    failed_count=rail.failed,
                    failure_reasons=[res_pb.ReasonCount(reason_code=c, count=n) for c, n in reasons],
                    waiting_count=rail.waiting,
                    sent_count=rail.sent,
                )
            )
        return response

    # ---- maker-checker approval (docs/TREASURY.md) --------------------------------------------------

    def _approver(self, context: Context) -> Caller:
        caller = self.auth.caller(context)
        if not caller.is_approver:
            raise permission_denied("approving or rejecting a batch needs the approver role", "APPROVER_ONLY")
        if not caller.subject:
            raise permission_denied("an approver's token must name its approver (sub)", "APPROVER_UNNAMED")
        return caller

    @handles_errors
    async def ApproveBatch(self, request: api_pb.ApproveBatchRequest, context: Context) -> res_pb.Batch:
        caller = self._approver(context)
        batch = await self._readable_batch(request.name, context)
        return await self._decide(batch, caller, APPROVED, "", request.request_id, context)

    @handles_errors
    async def RejectBatch(self, request: api_pb.RejectBatchRequest, context: Context) -> res_pb.Batch:
        caller = self._approver(context)
        if not request.reason.strip():
            raise invalid_argument("a rejection needs a reason", "REASON_REQUIRED", [("reason", "empty")])
        batch = await self._readable_batch(request.name, context)
        return await self._decide(
            batch, caller, REJECTED, request.reason.strip(), request.request_id, context
        )

    async def _decide(
        self,
        batch: BatchRecord,
        caller: Caller,
        decision: str,
        reason: str,
        request_id: str,
        context: Context,
    ) -> res_pb.Batch:
        action = "batch.approve" if decision == APPROVED else "batch.reject"
        try:
            outcome = await self.store.decide(
                batch.id,
                approver=caller.subject,
                decision=decision,
                reason=reason,
                request_id=request_id,
                audit=audit_event(caller, action, context, request_id=request_id, batch_uid=batch.uid),
            )
        except ApprovalRefused as refused:
            code = (
                grpc.StatusCode.FAILED_PRECONDITION
                if refused.reason == NOT_AWAITING
                else grpc.StatusCode.PERMISSION_DENIED
            )
            raise ApiError(
                code, refused.message, refused.reason, metadata={"batch": f"batches/{batch.uid}"}
            ) from None
        if not outcome.repeated:
            log.info(
                "batch %s %s by %s (%d approvals)", batch.uid, decision, caller.subject, outcome.approvals
            )
        if outcome.released:
            self.on_upload_complete()  # the relay publishes its work now
        return await self._view(batch.uid)

    @handles_errors
    async def GetApprovalPolicy(
        self, request: api_pb.GetApprovalPolicyRequest, context: Context
    ) -> res_pb.ApprovalPolicy:
        program = policy_program(request.name)
        if not self.auth.caller(context).may_use(program):
            raise not_found("approval policy", request.name)
        return policy_message(program, await self.store.get_approval_policy(program))

    @handles_errors
    async def UpdateApprovalPolicy(
        self, request: api_pb.UpdateApprovalPolicyRequest, context: Context
    ) -> res_pb.ApprovalPolicy:
        caller = self._operator(context, "setting an approval policy")
        policy = policy_from_message(request.name, request.approval_policy)
        detail = {
            "program": policy.program,
            "amount_thresholds": {c: format_amount(h) for c, h in sorted(policy.amount_thresholds.items())},
            "payment_count_threshold": policy.count_threshold,
            "required_approvals": policy.required_approvals,
        }
        stored = await self.store.set_approval_policy(
            policy, audit=audit_event(caller, "approval_policy.update", context, detail=detail)
        )
        log.info("approval policy of program %s set: %s", policy.program, detail)
        return policy_message(policy.program, stored)

    # ---- statement reconciliation (api/reconciliation.py) ------------------------------------------

    @handles_errors
    async def ImportStatement(
        self, request: api_pb.ImportStatementRequest, context: Context
    ) -> api_pb.ImportStatementResponse:
        return await self.statements.import_statement(request, context)

    @handles_errors
    async def GetBatchReconciliation(
        self, request: api_pb.GetBatchReconciliationRequest, context: Context
    ) -> res_pb.BatchReconciliation:
        return await self.statements.batch_reconciliation(request, context)

    @handles_errors
    async def GetCycleReconciliation(
        self, request: api_pb.GetCycleReconciliationRequest, context: Context
    ) -> res_pb.CycleReconciliation:
        return await self.statements.cycle_reconciliation(request, context)

    # ---- program cycles (api/cycles.py) ----------------------------------------------------------

    @handles_errors
    async def CreateCycle(self, request: api_pb.CreateCycleRequest, context: Context) -> res_pb.Cycle:
        return await self.cycles.create_cycle(request, context)

    @handles_errors
    async def UpdateCycle(self, request: api_pb.UpdateCycleRequest, context: Context) -> res_pb.Cycle:
        return await self.cycles.update_cycle(request, context)

    @handles_errors
    async def GetCycle(self, request: api_pb.GetCycleRequest, context: Context) -> res_pb.Cycle:
        return await self.cycles.get_cycle(request, context)

    @handles_errors
    async def ListCycles(
        self, request: api_pb.ListCyclesRequest, context: Context
    ) -> api_pb.ListCyclesResponse:
        return await self.cycles.list_cycles(request, context)


def _dead_letter_message(row: Any) -> res_pb.DeadLetter:
    return res_pb.DeadLetter(
        name=f"deadLetters/{row.id}",
        rail=row.rail,
        chunk_id=row.chunk_id,
        batch=f"batches/{row.uid}" if row.uid else "",
        payment_count=row.payment_count,
        reason=row.reason,
        create_time=timestamp(row.create_time),
    )


def _not_retryable(status: PaymentStatus) -> ApiError:
    return ApiError(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"a {status.name} payment cannot be retried: only a FAILED one",
        "PAYMENT_NOT_RETRYABLE",
    )


_DEFAULT_RAIL_WINDOW_S = 300
_MAX_RAIL_WINDOW_S = 86400
_DEAD_LETTER_NAME = re.compile(r"deadLetters/([1-9][0-9]{0,17})")
_REPORT_SLICE = 1000  # payments per HttpBody message of a report


async def _cycle_checked(call: Awaitable[R]) -> R:
    """A store call that may meet a cycle's refusal (its budget), which becomes FAILED_PRECONDITION."""
    try:
        return await call
    except CycleRefused as refused:
        raise ApiError(
            grpc.StatusCode.FAILED_PRECONDITION, refused.message, refused.reason, metadata=refused.details
        ) from None


def _refusal(refused: Refused) -> ApiError:
    """A submission rule broken, as the AIP-193 status the API gives it."""
    code = {
        Problem.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
        Problem.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
        Problem.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    }[refused.problem]
    return ApiError(
        code, refused.message, refused.reason, metadata=refused.details or None, violations=refused.violations
    )


def _chunk_ack(
    batch: BatchRecord, sequence: int, payment_count: int, rejections: list[api_pb.PaymentRejection]
) -> api_pb.UploadBatchResponse:
    summary = res_pb.Batch(
        name=f"batches/{batch.uid}", payment_count=payment_count, last_chunk_sequence=sequence
    )
    return api_pb.UploadBatchResponse(batch=summary, acknowledged_sequence=sequence, rejections=rejections)


_LIST_SLICE = 500  # payments read from the database at a time while a page fills


def _page_size(requested: int, *, default: int, most: int) -> int:
    if requested < 0:
        raise invalid_argument("page_size must not be negative", "INVALID_PAGE_SIZE", [("page_size", "< 0")])
    return min(requested or default, most)


# A cross-batch page position packs (batch id, payment number) into one token integer.
_NUMBER_SPAN = 2**32


def _filter(text: str, fields: Mapping[str, FieldSpec]) -> Filter:
    try:
        return parse_filter(text, fields)
    except InvalidFilter as exc:
        raise invalid_argument(str(exc), "INVALID_FILTER", [("filter", str(exc))]) from None


def _unused(*_: Any) -> None:
    """Keeps linters quiet about names only used in annotations."""
