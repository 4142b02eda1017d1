"""RailService: rail sidecars claim work chunks and stream their outcomes back."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from gpo.v1 import rail_pb2, rail_pb2_grpc

from gpo_kernel.reasons import Reason
from gpo_server.api.audit import audit_event
from gpo_server.api.auth import Authenticator, Caller, permission_denied
from gpo_server.api.convert import batch_uid, decode_page_token, encode_page_token
from gpo_server.api.errors import (
    ApiError,
    Context,
    abort,
    abort_internal,
    handles_errors,
    invalid_argument,
    not_found,
)
from gpo_server.api.tracing import message_span
from gpo_server.domain.money import format_amount
from gpo_server.domain.states import FundsBlockState, PaymentStatus
from gpo_server.observability import metrics
from gpo_server.storage.funds import FundsReport
from gpo_server.storage.rail_notes import NoteInput, RailNotesStore
from gpo_server.storage.store import ForeignRail, ResultUpdate, Store, WorkBuilder

log = logging.getLogger(__name__)

REPORT_RESULTS = "/gpo.v1.RailService/ReportResults"

# Rail outcome -> (payment status, whether a failure is definite).
_OUTCOMES = {
    rail_pb2.RAIL_OUTCOME_SUCCEEDED: (PaymentStatus.SUCCEEDED, True),
    rail_pb2.RAIL_OUTCOME_FAILED: (PaymentStatus.FAILED, True),
    rail_pb2.RAIL_OUTCOME_UNREACHABLE: (PaymentStatus.FAILED, False),
    rail_pb2.RAIL_OUTCOME_REVERSED: (PaymentStatus.REVERSED, True),
}
# The longest a rail call may still take effect after it started, for a claim that does not say
# (ClaimWorkChunkRequest.max_call_duration): until its lease plus this has passed, nobody else may verify.
DEFAULT_MAX_CALL_S = 60.0
# Heartbeat leases shorter than this are raised to it: a renewal every third of it must stay cheap.
MIN_LEASE_S = 3.0
# Rail notes (RecordRailNotes, ListRailNotes): the bounds rail.proto documents.
MAX_NOTES = 10_000  # notes per RecordRailNotes, keys and tags per ListRailNotes, notes per page
MAX_NOTE_BODY = 1024 * 1024
MAX_NOTES_BODIES = 8 * 1024 * 1024  # bodies per RecordRailNotes, and per page of ListRailNotes
# Funds requests (ClaimFundsBlocks, ReportFundsBlocks): per call, and the lease of a claim that asks none.
MAX_FUNDS_REQUESTS = 100
FUNDS_LEASE_S = 30.0


class RailService(rail_pb2_grpc.RailServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        *,
        lease_s: float = 300,
        max_sweeps: int = 3,
        redispatch: WorkBuilder | None = None,
        on_work: Callable[[], None] = lambda: None,
        funds_recheck_s: float = 300.0,
    ) -> None:
        self.store = store
        self.notes = RailNotesStore(store.engine)
        self.auth = auth
        self.lease_s = lease_s
        self.max_sweeps = max_sweeps
        # Builds work chunks for payments a verify-only look-up found absent, so they are sent again.
        self.redispatch = redispatch
        self.on_work = on_work
        # An INSUFFICIENT funds block is asked of the bank again after this long (GPO_FUNDS_RECHECK_S).
        self.funds_recheck_s = funds_recheck_s
        self.paid_twice = 0  # payments the rail said it executed more than once, since start
        # Batch name -> (id, schedule_time): neither changes once the batch exists.
        self._batches: dict[str, tuple[int, dt.datetime | None]] = {}

    def _sidecar(self, context: Context) -> Caller:
        """The calling sidecar (the interceptor admitted only sidecars; checked again for direct use)."""
        caller = self.auth.caller(context)
        if not caller.is_sidecar:
            raise permission_denied("only rail sidecars may call RailService", "NOT_A_SIDECAR")
        return caller

    async def _batch(self, name: str) -> tuple[int, dt.datetime | None]:
        uid = batch_uid(name, "batch")
        if uid not in self._batches:
            batch = await self.store.get_batch(uid)
            if batch is None:
                raise not_found("batch", name)
            if len(self._batches) > 10_000:
                self._batches.clear()
            self._batches[uid] = (batch.id, batch.schedule_time)
        return self._batches[uid]

    async def _batch_id(self, name: str) -> int:
        return (await self._batch(name))[0]

    @handles_errors
    async def ClaimWorkChunk(
        self, request: rail_pb2.ClaimWorkChunkRequest, context: Context
    ) -> rail_pb2.ClaimWorkChunkResponse:
        caller = self._sidecar(context)
        if not request.claim_id:
            raise invalid_argument("claim_id is required", "CLAIM_ID_MISSING", [("claim_id", "empty")])
        batch_id, not_before = await self._batch(request.batch)
        numbers = list(request.payment_numbers)
        lease_s = self._lease_s(request.lease_duration if request.HasField("lease_duration") else None)
        max_call_s = (
            max(0.0, request.max_call_duration.ToTimedelta().total_seconds())
            if request.HasField("max_call_duration")
            else DEFAULT_MAX_CALL_S
        )
        started = time.perf_counter()
        try:
            claim = await self.store.claim(
                batch_id,
                numbers,
                request.claim_id,
                lease_s,
                max_call_s,
                rails=caller.rails,
                not_before=not_before,
            )
        except ForeignRail as foreign:
            log.warning(
                "sidecar %s (%s) claimed %d payments of a rail it does not serve; refused",
                request.sidecar[:100],
                caller.subject[:100],
                len(foreign.numbers),
            )
            raise permission_denied(
                "the chunk holds payments of a rail this sidecar's token does not name", "RAIL_FORBIDDEN"
            ) from None
        metrics.CLAIM_SECONDS.observe(time.perf_counter() - started)
        metrics.CLAIMED_PAYMENTS.labels("execute").inc(len(claim.execute))
        metrics.CLAIMED_PAYMENTS.labels("verify").inc(len(claim.verify))
        metrics.CLAIMED_PAYMENTS.labels("busy").inc(len(claim.busy))
        response = rail_pb2.ClaimWorkChunkResponse(lease_token=claim.lease_token)
        response.lease_expire_time.FromDatetime(claim.lease_expire_time)
        response.lease_duration.FromTimedelta(dt.timedelta(seconds=lease_s))
        response.retry_after.FromTimedelta(claim.retry_after)
        for number in numbers:
            if number in claim.execute:
                action = rail_pb2.CLAIM_ACTION_EXECUTE
            elif number in claim.verify:
                # Claimed before and no longer held: the rail may have executed it already.
                action = rail_pb2.CLAIM_ACTION_VERIFY
            elif number in claim.busy:
                action = rail_pb2.CLAIM_ACTION_BUSY
            else:
                action = rail_pb2.CLAIM_ACTION_SKIP
            response.decisions.add(payment_number=number, action=action)
        if len(claim.execute) < len(numbers):
            log.info(
                "chunk %s by %s: %d execute, %d verify, %d busy, %d skip",
                request.chunk_id,
                request.sidecar,
                len(claim.execute),
                len(claim.verify),
                len(claim.busy),
                len(numbers) - len(claim.execute) - len(claim.verify) - len(claim.busy),
            )
        return response

    def _lease_s(self, requested: Any | None) -> float:
        """The lease a claim or renewal gets: what the sidecar asked for, within [MIN_LEASE_S, lease_s]."""
        if requested is None:
            return self.lease_s
        asked = requested.ToTimedelta().total_seconds()
        return min(self.lease_s, max(MIN_LEASE_S, asked)) if asked > 0 else self.lease_s

    @handles_errors
    async def RenewClaim(
        self, request: rail_pb2.RenewClaimRequest, context: Context
    ) -> rail_pb2.RenewClaimResponse:
        self._sidecar(context)
        if not request.claim_id or not request.lease_token:
            raise invalid_argument(
                "claim_id and lease_token are required",
                "CLAIM_ID_MISSING",
                [("claim_id", "empty")] if not request.claim_id else [("lease_token", "zero")],
            )
        batch_id = await self._batch_id(request.batch)
        lease_s = self._lease_s(request.lease_duration if request.HasField("lease_duration") else None)
        expires = await self.store.renew(
            batch_id, list(request.payment_numbers), request.claim_id, request.lease_token, lease_s
        )
        if expires is None:
            log.warning(
                "chunk %s: claim %s no longer holds all of its %d payments; renewal refused",
                request.chunk_id,
                request.claim_id,
                len(request.payment_numbers),
            )
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the claim no longer holds every listed payment: start no new rail call for it",
                "LEASE_LOST",
                metadata={"claim_id": request.claim_id[:200]},
            )
        response = rail_pb2.RenewClaimResponse()
        response.lease_expire_time.FromDatetime(expires)
        response.lease_duration.FromTimedelta(dt.timedelta(seconds=lease_s))
        return response

    async def ReportResults(
        self, request_iterator: AsyncIterator[rail_pb2.ReportResultsRequest], context: Context
    ) -> AsyncIterator[rail_pb2.ReportResultsResponse]:
        try:
            caller = self._sidecar(context)
            async for request in request_iterator:
                # Each request in its chunk's trace: one stream carries every chunk a sidecar reports.
                with message_span(REPORT_RESULTS, request, request.traceparent):
                    batch_id = await self._batch_id(request.batch)
                    updates = [_result_update(r) for r in request.results]
                    refused: list[int] = []
                    started = time.perf_counter()
                    applied = await self.store.apply_results(
                        batch_id,
                        updates,
                        owner=request.claim_id,
                        token=request.lease_token,
                        released=list(request.released_payment_numbers),
                        unknown=list(request.unknown_payment_numbers),
                        max_sweeps=self.max_sweeps,
                        redispatch=self.redispatch,
                        refused=refused,
                        rails=caller.rails,
                        audit=audit_event(
                            caller,
                            "rail.report",
                            batch_uid=batch_uid(request.batch, "batch"),
                            detail={"chunk_id": request.chunk_id[:100], "claim_id": request.claim_id[:200]},
                        ),
                    )
                    metrics.REPORT_SECONDS.observe(time.perf_counter() - started)
                    metrics.REPORTED_PAYMENTS.inc(applied)
                    if request.unknown_payment_numbers and self.redispatch is not None:
                        self.on_work()  # the relay publishes what was sent again
                    if twice := sum(1 for u in updates if u.rail_executions > 1):
                        self.paid_twice += twice
                        log.error(
                            "chunk %s: the rail executed %d payments more than once (%d since start); they are"
                            " flagged for attention",
                            request.chunk_id,
                            twice,
                            self.paid_twice,
                        )
                    if refused:
                        log.warning(
                            "chunk %s: %d statements of claim %s refused: it no longer holds those payments",
                            request.chunk_id,
                            len(refused),
                            request.claim_id,
                        )
                yield rail_pb2.ReportResultsResponse(
                    chunk_id=request.chunk_id, applied_count=applied, refused_payment_numbers=refused
                )
        except ApiError as error:
            await abort(context, error)
        except Exception:
            await abort_internal(context)

    def _note_rail(self, caller: Caller, rail: str) -> str:
        """The rail whose notes a call reads or writes: one the sidecar's token names."""
        if not rail:
            raise invalid_argument("rail is required", "RAIL_MISSING", [("rail", "empty")])
        if not caller.may_serve(rail):
            raise permission_denied(
                f"this sidecar's token does not name rail {rail!r}: it may not read or write its notes",
                "RAIL_FORBIDDEN",
            )
        return rail

    @handles_errors
    async def RecordRailNotes(
        self, request: rail_pb2.RecordRailNotesRequest, context: Context
    ) -> rail_pb2.RecordRailNotesResponse:
        caller = self._sidecar(context)
        rail = self._note_rail(caller, request.rail)
        if len(request.notes) > MAX_NOTES:
            raise invalid_argument(
                f"at most {MAX_NOTES} notes per call", "TOO_MANY_NOTES", [("notes", f"{len(request.notes)}")]
            )
        problems = [(f"notes[{i}].tag", "empty") for i, note in enumerate(request.notes) if not note.tag] + [
            (f"notes[{i}].body", f"longer than {MAX_NOTE_BODY} bytes")
            for i, note in enumerate(request.notes)
            if len(note.body) > MAX_NOTE_BODY
        ]
        if problems:
            raise invalid_argument(
                "every note needs a tag and a body of at most 1 MiB", "INVALID_NOTE", problems[:20]
            )
        if (size := sum(len(note.body) for note in request.notes)) > MAX_NOTES_BODIES:
            raise invalid_argument(
                f"at most {MAX_NOTES_BODIES} bytes of bodies per call",
                "TOO_MANY_NOTES",
                [("notes", f"{size} bytes")],
            )
        recorded = await self.notes.record(
            rail,
            [NoteInput(n.tag, n.idempotency_key, n.body) for n in request.notes],
            audit_event(
                caller,
                "rail.notes.record",
                context,
                detail={"rail": rail, "notes": len(request.notes)},
            ),
        )
        return rail_pb2.RecordRailNotesResponse(recorded_count=recorded)

    @handles_errors
    async def ListRailNotes(
        self, request: rail_pb2.ListRailNotesRequest, context: Context
    ) -> rail_pb2.ListRailNotesResponse:
        caller = self._sidecar(context)
        rail = self._note_rail(caller, request.rail)
        keys, tags = list(request.idempotency_keys), list(request.tags)
        if len(keys) > MAX_NOTES or len(tags) > MAX_NOTES:
            raise invalid_argument(
                f"at most {MAX_NOTES} idempotency keys and {MAX_NOTES} tags per call",
                "TOO_MANY_NOTES",
                [("idempotency_keys" if len(keys) > MAX_NOTES else "tags", "too many")],
            )
        if request.page_size < 0:
            raise invalid_argument(
                "page_size must not be negative", "INVALID_PAGE_SIZE", [("page_size", "negative")]
            )
        size = min(request.page_size or MAX_NOTES, MAX_NOTES)
        # The token belongs to this query: a digest of what it asks, so a token never pages another one.
        scope = (
            "notes:"
            + hashlib.sha256(
                "\0".join([rail, *sorted(set(keys)), "\1", *sorted(set(tags))]).encode()
            ).hexdigest()[:32]
        )
        after = decode_page_token(request.page_token, scope) or 0
        notes, more = await self.notes.find(
            rail,
            idempotency_keys=keys,
            tags=tags,
            after_id=after,
            limit=size,
            max_body_bytes=MAX_NOTES_BODIES,
        )
        response = rail_pb2.ListRailNotesResponse()
        for note in notes:
            message = response.notes.add(tag=note.tag, idempotency_key=note.idempotency_key, body=note.body)
            message.create_time.FromDatetime(note.create_time)
        if more and notes:
            response.next_page_token = encode_page_token(notes[-1].id, scope)
        return response

    @handles_errors
    async def ClaimFundsBlocks(
        self, request: rail_pb2.ClaimFundsBlocksRequest, context: Context
    ) -> rail_pb2.ClaimFundsBlocksResponse:
        caller = self._sidecar(context)
        rail = self._note_rail(caller, request.rail)
        if not request.claim_id:
            raise invalid_argument("claim_id is required", "CLAIM_ID_MISSING", [("claim_id", "empty")])
        if request.max_requests < 0:
            raise invalid_argument(
                "max_requests must not be negative", "INVALID_PAGE_SIZE", [("max_requests", "negative")]
            )
        asked = (
            request.lease_duration.ToTimedelta().total_seconds() if request.HasField("lease_duration") else 0
        )
        lease_s = min(max(asked or FUNDS_LEASE_S, MIN_LEASE_S), max(self.lease_s, MIN_LEASE_S))
        blocks = await self.store.claim_funds_blocks(
            rail,
            request.claim_id,
            lease_s,
            min(request.max_requests or MAX_FUNDS_REQUESTS, MAX_FUNDS_REQUESTS),
            self.funds_recheck_s,
        )
        response = rail_pb2.ClaimFundsBlocksResponse()
        for block in blocks:
            response.requests.add(
                block_id=block.block_id,
                action=rail_pb2.FUNDS_ACTION_RELEASE
                if block.state is FundsBlockState.RELEASING
                else rail_pb2.FUNDS_ACTION_BLOCK,
                batch=f"batches/{block.batch_uid}",
                payer_fa=block.payer_fa,
                currency_code=block.currency_code,
                amount=format_amount(block.amount_hundredths),
            )
        if blocks:
            log.info(
                "sidecar %s claimed %d funds requests of rail %s", caller.subject[:100], len(blocks), rail
            )
        return response

    @handles_errors
    async def ReportFundsBlocks(
        self, request: rail_pb2.ReportFundsBlocksRequest, context: Context
    ) -> rail_pb2.ReportFundsBlocksResponse:
        caller = self._sidecar(context)
        rail = self._note_rail(caller, request.rail)
        if len(request.results) > MAX_FUNDS_REQUESTS:
            raise invalid_argument(
                f"at most {MAX_FUNDS_REQUESTS} results per call",
                "TOO_MANY_RESULTS",
                [("results", f"{len(request.results)} results")],
            )
        reports = []
        for r in request.results:
            outcome = _FUNDS_OUTCOMES.get(r.outcome)
            if outcome is None:
                raise invalid_argument(
                    "every result needs outcome BLOCKED, INSUFFICIENT or RELEASED",
                    "INVALID_OUTCOME",
                    [("results.outcome", f"block {r.block_id[:64]}: {r.outcome}")],
                )
            reports.append(FundsReport(r.block_id, outcome, "", r.reason_message, r.bank_reference))
        applied, released = await self.store.report_funds_blocks(
            rail,
            reports,
            audit_event(caller, "rail.funds", context, detail={"rail": rail}),
        )
        for uid in released:
            log.info("batch %s: funds blocked with the bank; dispatching", uid)
        if released:
            self.on_work()
        return rail_pb2.ReportFundsBlocksResponse(applied_count=applied)


_FUNDS_OUTCOMES = {
    rail_pb2.FUNDS_OUTCOME_BLOCKED: FundsBlockState.BLOCKED,
    rail_pb2.FUNDS_OUTCOME_INSUFFICIENT: FundsBlockState.INSUFFICIENT,
    rail_pb2.FUNDS_OUTCOME_RELEASED: FundsBlockState.RELEASED,
}


def _result_update(r: rail_pb2.PaymentResult) -> ResultUpdate:
    outcome = _OUTCOMES.get(r.outcome)
    if outcome is None:
        raise invalid_argument(
            "every result needs outcome SUCCEEDED, FAILED, UNREACHABLE or REVERSED",
            "INVALID_OUTCOME",
            [("results.outcome", f"payment {r.payment_number}: {r.outcome}")],
        )
    status, definite = outcome
    code = r.reason_code or (
        Reason.RAIL_UNREACHABLE if r.outcome == rail_pb2.RAIL_OUTCOME_UNREACHABLE else ""
    )
    return ResultUpdate(
        r.payment_number,
        status,
        code[:128],
        r.reason_message[:1024],
        r.rail_reference[:256],
        definite if status is PaymentStatus.FAILED else None,
        max(0, r.rail_executions),
    )
