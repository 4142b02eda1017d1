"""The longest value every string field of every request may carry, and the interceptor that refuses a
longer one with INVALID_ARGUMENT before any handler reads it (issue 12, item 5: two 9 MB program names
were accepted, logged in full and broke ListBatches).

MAX_CHARS is the one table: each bound is also written in the field's comment in protos/gpo/v1/ ("At most
N characters."), and tests/integration/test_field_bounds.py checks that the two agree and that every
bound is refused when passed. A string field reachable from a request that the table does not name stops
the server at import, so a new field cannot go unbounded. Lengths count Unicode code points.

A payment's own fields (PaymentInput) are not refused here: intake rejects that one payment with a reason
code (domain/validation.py) and the rest of its chunk goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message
from gpo.v1 import disbursement_service_pb2, g2p_connect_service_pb2, rail_pb2

from gpo_server.api.errors import ApiError, Context, abort, invalid_argument
from gpo_server.api.interceptor import HandlerInterceptor, behavior_of, service_of
from gpo_server.domain import validation as v

MAX_NAME = 128  # "batches/{uuid}" is 44
MAX_PAYMENT_NAME = 320  # "batches/{uuid}/payments/" and a reference (at most 256 characters shown)
MAX_REQUEST_ID = 64  # a UUID is 36
MAX_PAGE_TOKEN = 4096  # GPO's own tokens are far shorter
MAX_FILTER = 1024
MAX_RAIL = 64
MAX_CHUNK_ID = 128
MAX_CLAIM_ID = 256
MAX_TRACEPARENT = 128  # W3C version 00 takes 55
MAX_SIDECAR = 128
MAX_TOTAL_AMOUNT = 32
MAX_REASON_CODE = 128
MAX_REASON_MESSAGE = 1024
MAX_RAIL_REFERENCE = 256
MAX_CONTENT_TYPE = 255
MAX_NOTE_TAG = 128
MAX_CYCLE_ID = 63  # domain/cycles.py
MAX_PROGRAM_NAME = 160  # "programs/" and a program (at most 128 characters)
MAX_CYCLE_NAME = 200  # "programs/{program}/cycles/{cycle}"
MAX_CYCLE_RECONCILIATION_NAME = MAX_CYCLE_NAME + len("/reconciliation")
MAX_POLICY_NAME = 160  # "programs/" + a program (at most 128) + "/approvalPolicy"

# A payment's own fields: checked one payment at a time by domain/validation.py (a rejection, not an error).
PER_PAYMENT = "gpo.v1.PaymentInput"

MAX_CHARS: Mapping[str, int] = {
    # DisbursementService
    "gpo.v1.BatchHeader.program": v.MAX_PROGRAM,
    "gpo.v1.BatchHeader.request_id": MAX_REQUEST_ID,
    "gpo.v1.BatchHeader.payer_fa": v.MAX_FA,
    "gpo.v1.BatchHeader.callback_uri": v.MAX_CALLBACK_URI,
    "gpo.v1.BatchHeader.expected_total_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.PaymentInput.reference_id": v.MAX_REFERENCE_ID,
    "gpo.v1.PaymentInput.payer_fa": v.MAX_FA,
    "gpo.v1.PaymentInput.payee_fa": v.MAX_FA,
    "gpo.v1.PaymentInput.amount": 16,  # ^\d{1,13}\.\d{1,2}$
    "gpo.v1.PaymentInput.currency_code": 3,
    "gpo.v1.PaymentInput.payee_name": v.MAX_NAME,
    "gpo.v1.PaymentInput.note": v.MAX_NOTE,
    "gpo.v1.PaymentInput.purpose": v.MAX_PURPOSE,
    "gpo.v1.PaymentInput.metadata": v.MAX_METADATA_TOTAL,  # keys and values, in all
    "gpo.v1.GetBatchRequest.name": MAX_NAME,
    "gpo.v1.ListBatchesRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.ListBatchesRequest.program": v.MAX_PROGRAM,
    "gpo.v1.ListBatchesRequest.filter": MAX_FILTER,
    "gpo.v1.ListPaymentsRequest.parent": MAX_NAME,
    "gpo.v1.ListPaymentsRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.ListPaymentsRequest.filter": MAX_FILTER,
    "gpo.v1.ListStatusChangesRequest.parent": MAX_PAYMENT_NAME,
    "gpo.v1.ListStatusChangesRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.WatchBatchRequest.name": MAX_NAME,
    "gpo.v1.CancelBatchRequest.name": MAX_NAME,
    "gpo.v1.CancelBatchRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.RetryFailedPaymentsRequest.name": MAX_NAME,
    "gpo.v1.RetryFailedPaymentsRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.ListDeadLettersRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.ListDeadLettersRequest.rail": MAX_RAIL,
    "gpo.v1.ListAuditEventsRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.ListAuditEventsRequest.batch": MAX_NAME,
    "gpo.v1.CancelPaymentRequest.name": MAX_PAYMENT_NAME,
    "gpo.v1.CancelPaymentRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.RetryPaymentRequest.name": MAX_PAYMENT_NAME,
    "gpo.v1.RetryPaymentRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.ResolvePaymentRequest.name": MAX_PAYMENT_NAME,
    "gpo.v1.ResolvePaymentRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.ExportPaymentsRequest.name": MAX_NAME,
    "gpo.v1.RedriveDeadLetterRequest.name": MAX_NAME,
    "gpo.v1.RedriveDeadLetterRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.ImportStatementRequest.format": 16,
    "gpo.v1.ImportStatementRequest.batches": MAX_NAME,
    "gpo.v1.GetBatchReconciliationRequest.name": MAX_NAME,
    "gpo.v1.GetCycleReconciliationRequest.name": MAX_CYCLE_RECONCILIATION_NAME,
    "gpo.v1.BatchHeader.cycle": MAX_CYCLE_ID,
    "gpo.v1.CreateCycleRequest.parent": MAX_PROGRAM_NAME,
    "gpo.v1.CreateCycleRequest.cycle_id": MAX_CYCLE_ID,
    "gpo.v1.Cycle.name": MAX_CYCLE_NAME,
    "gpo.v1.Cycle.declared_total_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleBudget.currency_code": 3,
    "gpo.v1.CycleBudget.amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.currency_code": 8,
    "gpo.v1.CycleTotal.budget_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.committed_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.accepted_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.paid_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.failed_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.reversed_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.CycleTotal.cancelled_amount": MAX_TOTAL_AMOUNT,
    "gpo.v1.GetCycleRequest.name": MAX_CYCLE_NAME,
    "gpo.v1.UpdateCycleRequest.name": MAX_CYCLE_NAME,
    "gpo.v1.ListCyclesRequest.parent": MAX_PROGRAM_NAME,
    "gpo.v1.ListCyclesRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.ApproveBatchRequest.name": MAX_NAME,
    "gpo.v1.ApproveBatchRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.RejectBatchRequest.name": MAX_NAME,
    "gpo.v1.RejectBatchRequest.request_id": MAX_REQUEST_ID,
    "gpo.v1.RejectBatchRequest.reason": MAX_REASON_MESSAGE,
    "gpo.v1.GetApprovalPolicyRequest.name": MAX_POLICY_NAME,
    "gpo.v1.ApprovalPolicy.name": MAX_POLICY_NAME,
    "gpo.v1.UpdateApprovalPolicyRequest.name": MAX_POLICY_NAME,
    "gpo.v1.AmountThreshold.currency_code": 3,
    "gpo.v1.AmountThreshold.amount": MAX_TOTAL_AMOUNT,
    # RailService
    "gpo.v1.ClaimWorkChunkRequest.chunk_id": MAX_CHUNK_ID,
    "gpo.v1.ClaimWorkChunkRequest.batch": MAX_NAME,
    "gpo.v1.ClaimWorkChunkRequest.sidecar": MAX_SIDECAR,
    "gpo.v1.ClaimWorkChunkRequest.claim_id": MAX_CLAIM_ID,
    "gpo.v1.RenewClaimRequest.chunk_id": MAX_CHUNK_ID,
    "gpo.v1.RenewClaimRequest.batch": MAX_NAME,
    "gpo.v1.RenewClaimRequest.claim_id": MAX_CLAIM_ID,
    "gpo.v1.ReportResultsRequest.chunk_id": MAX_CHUNK_ID,
    "gpo.v1.ReportResultsRequest.batch": MAX_NAME,
    "gpo.v1.ReportResultsRequest.claim_id": MAX_CLAIM_ID,
    "gpo.v1.ReportResultsRequest.traceparent": MAX_TRACEPARENT,
    "gpo.v1.PaymentResult.idempotency_key": MAX_REQUEST_ID,
    "gpo.v1.PaymentResult.reason_code": MAX_REASON_CODE,
    "gpo.v1.PaymentResult.reason_message": MAX_REASON_MESSAGE,
    "gpo.v1.PaymentResult.rail_reference": MAX_RAIL_REFERENCE,
    "gpo.v1.RecordRailNotesRequest.rail": MAX_RAIL,
    "gpo.v1.RailNote.tag": MAX_NOTE_TAG,
    "gpo.v1.RailNote.idempotency_key": MAX_REQUEST_ID,
    "gpo.v1.ListRailNotesRequest.rail": MAX_RAIL,
    "gpo.v1.ListRailNotesRequest.idempotency_keys": MAX_REQUEST_ID,
    "gpo.v1.ListRailNotesRequest.tags": MAX_NOTE_TAG,
    "gpo.v1.ListRailNotesRequest.page_token": MAX_PAGE_TOKEN,
    "gpo.v1.ClaimFundsBlocksRequest.rail": MAX_RAIL,
    "gpo.v1.ClaimFundsBlocksRequest.claim_id": MAX_CLAIM_ID,
    "gpo.v1.ReportFundsBlocksRequest.rail": MAX_RAIL,
    "gpo.v1.ReportFundsBlocksRequest.claim_id": MAX_CLAIM_ID,
    "gpo.v1.FundsResult.block_id": MAX_REQUEST_ID,
    "gpo.v1.FundsResult.reason_message": MAX_REASON_MESSAGE,
    "gpo.v1.FundsResult.bank_reference": MAX_RAIL_REFERENCE,
    # G2pConnectService: google.api.HttpBody (its comment is in g2p_connect_service.proto)
    "google.api.HttpBody.content_type": MAX_CONTENT_TYPE,
}

SERVICE_FILES: tuple[FileDescriptor, ...] = (
    disbursement_service_pb2.DESCRIPTOR,
    rail_pb2.DESCRIPTOR,
    g2p_connect_service_pb2.DESCRIPTOR,
)


def _is_string(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return message is not None and message.GetOptions().map_entry


def request_string_fields() -> dict[str, FieldDescriptor]:
    """Every string field (maps with string keys or values included) reachable from a request message of
    GPO's services, by full name."""
    found: dict[str, FieldDescriptor] = {}
    seen: set[str] = set()

    def walk(message: Descriptor) -> None:
        if message.full_name in seen:
            return
        seen.add(message.full_name)
        for field in message.fields:
            if _is_string(field):
                found[field.full_name] = field
            elif _is_map(field):
                if any(_is_string(f) for f in field.message_type.fields):  # type: ignore[union-attr]
                    found[field.full_name] = field
            elif field.message_type is not None and field.message_type.full_name != "google.protobuf.Any":
                # Any names a type (type_url) that no handler resolves; nothing reads it.
                walk(field.message_type)

    for file in SERVICE_FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                walk(method.input_type)
    return found


# Plans: per message type, its bounded string fields and the message fields to walk into.
_Plan = tuple[dict[str, int], dict[str, FieldDescriptor], set[str]]
_PLANS: dict[str, _Plan] = {}


def _plan(message: Any) -> _Plan:  # a Descriptor, of the pure-Python or the upb implementation
    plan = _PLANS.get(message.full_name)
    if plan is None:
        bounded, maps, nested = {}, {}, set()
        for field in message.fields:
            if _is_string(field):
                bounded[field.name] = MAX_CHARS[field.full_name]
            elif _is_map(field):
                if field.full_name in MAX_CHARS:
                    bounded[field.name] = MAX_CHARS[field.full_name]
                    maps[field.name] = field
            elif field.message_type is not None and field.message_type.full_name not in (
                PER_PAYMENT,
                "google.protobuf.Any",
            ):
                nested.add(field.name)
        plan = _PLANS[message.full_name] = (bounded, maps, nested)
    return plan


# The reason a refusal carries: the one the handler's own checks of that message or field already give,
# so a client sees one reason for one kind of mistake; FIELD_TOO_LONG otherwise.
_REASONS = {"gpo.v1.BatchHeader": "INVALID_HEADER", "page_token": "INVALID_PAGE_TOKEN"}


def reason_for(field_full_name: str) -> str:
    message, _, name = field_full_name.rpartition(".")
    return _REASONS.get(message) or _REASONS.get(name) or "FIELD_TOO_LONG"


def violations(message: Message, prefix: str = "") -> list[tuple[str, str]]:
    """(field path, problem) for every string of `message` longer than its bound."""
    return [(path, problem) for path, problem, _ in _violations(message, prefix)]


def _violations(message: Message, prefix: str = "") -> list[tuple[str, str, str]]:
    """(field path, problem, reason) for every string of `message` longer than its bound."""
    found: list[tuple[str, str, str]] = []
    bounded, maps, nested = _plan(message.DESCRIPTOR)
    for field, value in message.ListFields():
        name = field.name
        if name in maps:
            length = sum(len(k) + len(str(v)) for k, v in value.items())
            if length > bounded[name]:
                found.append(
                    (
                        f"{prefix}{name}",
                        f"longer than {bounded[name]} characters in all",
                        reason_for(field.full_name),
                    )
                )
        elif name in bounded:
            values = value if field.is_repeated else [value]
            for i, text in enumerate(values):
                if len(text) > bounded[name]:
                    where = f"{prefix}{name}[{i}]" if field.is_repeated else prefix + name
                    found.append(
                        (where, f"longer than {bounded[name]} characters", reason_for(field.full_name))
                    )
        elif name in nested:
            items = value if field.is_repeated else [value]
            for i, item in enumerate(items):
                index = f"[{i}]" if field.is_repeated else ""
                found.extend(_violations(item, f"{prefix}{name}{index}."))
    return found


def check(message: Message) -> None:
    """Raises INVALID_ARGUMENT (a field violation each) if a string is too long."""
    if problems := _violations(message):
        path, problem, reason = problems[0]
        raise invalid_argument(f"{path} is {problem}", reason, [(p, d) for p, d, _ in problems[:20]])


def _unbounded() -> list[str]:
    return sorted(name for name in request_string_fields() if name not in MAX_CHARS)


if missing := _unbounded():  # a new request field without a bound: refuse to start rather than serve it
    raise RuntimeError(f"request string fields without a bound in gpo_server/api/bounds.py: {missing}")


class BoundsInterceptor(HandlerInterceptor):
    """Checks every request message (each one of a stream) against MAX_CHARS before its handler sees it."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        if not service_of(method).startswith("gpo.v1."):
            return handler  # health and reflection
        return _checked(handler)


def _checked(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    inner, make = behavior_of(handler)

    behavior: Callable[..., Any]
    if handler.request_streaming:

        async def checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                check(request)  # the handler's own error path answers it, as for any ApiError it meets
                yield request

        def streaming_request(requests: AsyncIterator[Any], context: Context) -> Any:
            return inner(checked_stream(requests), context)

        behavior = streaming_request
    elif handler.response_streaming:

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await _refuse_if_too_long(request, context)
            async for response in inner(request, context):
                yield response

        behavior = unary_stream
    else:

        async def unary(request: Any, context: Context) -> Any:
            await _refuse_if_too_long(request, context)
            return await inner(request, context)

        behavior = unary
    return make(behavior)


async def _refuse_if_too_long(request: Message, context: Context) -> None:
    try:
        check(request)
    except ApiError as error:
        await abort(context, error)
