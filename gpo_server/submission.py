"""Submitting a batch, the one way both entry points do it: UploadBatch's stream and G2P Connect's disburse.

`open` checks nothing of the caller (each entry point authorizes its own) and creates the batch, or
resumes it by its request_id. An `Upload` adds chunks in sequence: each is validated, routed and stored
all or nothing by Intake, and rejections decided beforehand come in by index with their reason codes.
`finish` ends the upload if what arrived matches what was declared: completed, held (fewer payments
than declared so far), mismatch (everything declared arrived and does not add up) or empty. A rule
broken is `Refused`, which each entry point turns into its own protocol's error.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from gpo.v1 import disbursement_service_pb2 as api_pb

from gpo_server.domain.cycles import (
    CYCLE_BUDGET_EXCEEDED,
    CYCLE_CLOSED,
    CYCLE_NOT_FOUND,
    CYCLE_REQUIRED,
    cycle_id_problem,
    cycle_name,
    window_problem,
)
from gpo_server.domain.money import InvalidAmount, format_amount, parse_total
from gpo_server.domain.states import BatchState
from gpo_server.domain.validation import callback_uri_problem, is_financial_address, program_problem
from gpo_server.intake import MAX_PAYMENTS_PER_CHUNK, ChunkOutcome, Intake, OutOfOrderChunk, PreparedChunk
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.records import BatchRecord, CycleRefused, NewBatch
from gpo_server.storage.sql import utcnow
from gpo_server.storage.store import Store

log = logging.getLogger(__name__)


class Problem(enum.Enum):
    INVALID = "invalid"  # the request is wrong in itself
    CONFLICT = "conflict"  # it contradicts what is stored: a request_id reused with another header
    PRECONDITION = "precondition"  # the batch is not where the request needs it


class Refused(Exception):
    """A submission rule the request broke: a stable reason (the API's error reason), what to say, the
    fields at fault (`violations`) and facts for the caller to act on (`details`)."""

    def __init__(
        self,
        problem: Problem,
        message: str,
        reason: str,
        *,
        violations: Sequence[tuple[str, str]] = (),
        details: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.problem, self.message, self.reason = problem, message, reason
        self.violations = list(violations)
        self.details = dict(details or {})


class Finished(enum.Enum):
    COMPLETED = "completed"  # the upload ended: the batch dispatches, awaits approval, or was cancelled
    HELD = "held"  # fewer payments than declared so far: the same request_id may send the rest
    MISMATCH = "mismatch"  # everything declared arrived but count or total differ: held, and said so
    EMPTY = "empty"  # no payment at all: the upload stays open


@dataclass(frozen=True, slots=True)
class Finish:
    batch: BatchRecord
    outcome: Finished


class Submissions:
    def __init__(
        self,
        store: Store,
        intake: Intake,
        on_upload_complete: Callable[[], None],
        *,
        allow_http_loopback_callbacks: bool = False,
    ) -> None:
        self.store = store
        self.intake = intake
        self.on_upload_complete = on_upload_complete
        # Batch callback URIs are https only; http to loopback too where a deployment allows it.
        self.allow_http_loopback_callbacks = allow_http_loopback_callbacks

    def check_header(self, header: api_pb.BatchHeader) -> NewBatch:
        """The batch a header asks for; Refused (INVALID_HEADER) naming every field at fault."""
        violations = []
        if (problem := program_problem(header.program)) is not None:
            violations.append(("header.program", problem))
        if header.callback_uri and (
            problem := callback_uri_problem(
                header.callback_uri, allow_http_loopback=self.allow_http_loopback_callbacks
            )
        ):
            violations.append(("header.callback_uri", problem))
        try:
            uuid.UUID(header.request_id)
        except ValueError:
            violations.append(("header.request_id", "must be a UUID (AIP-155)"))
        if header.payer_fa and not is_financial_address(header.payer_fa):
            violations.append(("header.payer_fa", "not a financial address scheme:id@provider"))
        if header.expected_payment_count < 0:
            violations.append(("header.expected_payment_count", "must not be negative"))
        if header.cycle and (problem := cycle_id_problem(header.cycle)):
            violations.append(("header.cycle", problem))
        total = None
        if header.expected_total_amount:
            try:
                total = parse_total(header.expected_total_amount)
            except InvalidAmount as exc:
                violations.append(("header.expected_total_amount", str(exc)))
        if violations:
            raise Refused(
                Problem.INVALID, "the batch header is invalid", "INVALID_HEADER", violations=violations
            )
        return NewBatch(
            program=header.program,
            request_id=header.request_id,
            payer_fa=header.payer_fa,
            callback_uri=header.callback_uri,
            schedule_time=header.schedule_time.ToDatetime(dt.UTC)
            if header.HasField("schedule_time")
            else None,
            expected_payment_count=header.expected_payment_count,
            expected_total_hundredths=total,
            cycle=header.cycle,
        )

    async def open(self, new: NewBatch, audit: AuditEvent | None = None) -> BatchRecord:
        """The batch of `new`'s program and request_id: created (`audit` recorded with it), or the one
        already there if it declared the same; Refused (REQUEST_ID_REUSED) if it declared otherwise.
        A new batch's cycle is checked first (`check_cycle`)."""
        if await self.store.find_batch(new.program, new.request_id) is None:
            await self.check_cycle(new)
        if audit is not None and not new.uploader:
            new = replace(new, uploader=audit.subject)  # maker-checker: the uploader never approves it
        batch, created = await self.store.create_or_get_batch(new, audit=audit)
        if not created and (
            batch.payer_fa,
            batch.expected_payment_count,
            batch.expected_total_hundredths,
            batch.cycle,
        ) != (new.payer_fa, new.expected_payment_count, new.expected_total_hundredths, new.cycle):
            raise Refused(
                Problem.CONFLICT,
                "request_id was used for a batch with a different header",
                "REQUEST_ID_REUSED",
                details={"batch": f"batches/{batch.uid}"},
            )
        log.info("batch %s %s for program %s", batch.uid, "created" if created else "resumed", batch.program)
        return batch

    async def check_cycle(self, new: NewBatch) -> None:
        """Refused unless the new batch may open in its cycle: a program with cycles needs one named
        (CYCLE_REQUIRED); it must exist (CYCLE_NOT_FOUND) and be open now (CYCLE_CLOSED); a declared total
        larger than all the cycle has left, every currency together, cannot fit (CYCLE_BUDGET_EXCEEDED). The
        decisive budget check is at the end of the upload, under the cycle's lock (Store.finish_upload)."""
        if not new.cycle:
            if await self.store.program_has_cycles(new.program):
                raise Refused(
                    Problem.PRECONDITION,
                    f"program {new.program!r} pays in cycles: the batch header must name one (header.cycle)",
                    CYCLE_REQUIRED,
                    violations=[("header.cycle", "required: the program has cycles")],
                )
            return
        name = cycle_name(new.program, new.cycle)
        cycle = await self.store.get_cycle(new.program, new.cycle)
        if cycle is None:
            raise Refused(
                Problem.PRECONDITION,
                f"program {new.program!r} has no cycle {new.cycle!r}",
                CYCLE_NOT_FOUND,
                violations=[("header.cycle", "no such cycle")],
                details={"cycle": name},
            )
        if problem := window_problem(cycle.start_time, cycle.end_time, utcnow()):
            raise Refused(Problem.PRECONDITION, problem, CYCLE_CLOSED, details={"cycle": name})
        if cycle.budgets and new.expected_total_hundredths is not None:
            committed = await self.store.cycle_committed(cycle)
            left = sum(max(b - committed.get(c, 0), 0) for c, b in cycle.budgets.items())
            if new.expected_total_hundredths > left:
                raise Refused(
                    Problem.PRECONDITION,
                    f"the declared total {format_amount(new.expected_total_hundredths)} is more than cycle "
                    f"{new.cycle!r} has left ({format_amount(left)}, every currency together)",
                    CYCLE_BUDGET_EXCEEDED,
                    details={
                        "cycle": name,
                        "left": format_amount(left),
                        "requested": format_amount(new.expected_total_hundredths),
                    },
                )

    def upload(self, batch: BatchRecord) -> Upload:
        """Adds chunks to an open batch, from the chunk after the last one stored."""
        return Upload(self.intake, batch)

    async def finish(self, batch: BatchRecord, audit: AuditEvent | None = None) -> Finish:
        """Ends the upload if what arrived matches what was declared (`audit` recorded when it ends). A
        batch its cycle refuses (closed, or over its budget) is Refused and stays UPLOADING: nothing of it
        is sent; CancelBatch cancels it, or, once the cycle fits it, the same request_id finishes it."""
        try:
            batch = await self.store.finish_upload(batch.id, audit=audit)
        except CycleRefused as refused:
            log.info("batch %s refused by its cycle: %s", batch.uid, refused.message)
            details = {"batch": f"batches/{batch.uid}", **refused.details}
            raise Refused(Problem.PRECONDITION, refused.message, refused.reason, details=details) from None
        if batch.payment_count == 0:
            return Finish(batch, Finished.EMPTY)
        if batch.state is not BatchState.UPLOADING:
            if batch.state is not BatchState.AWAITING_APPROVAL:  # else its release wakes the relay
                self.on_upload_complete()
            return Finish(batch, Finished.COMPLETED)
        if batch.expected_payment_count and batch.payment_count >= batch.expected_payment_count:
            return Finish(batch, Finished.MISMATCH)
        log.info(
            "batch %s held: %d payments received of %d declared",
            batch.uid,
            batch.payment_count,
            batch.expected_payment_count,
        )
        return Finish(batch, Finished.HELD)


class Upload:
    """One upload into an open batch, by its own count of what comes next. Chunk N+1 may be prepared
    while chunk N commits: the references N claims travel with N+1's validation, as the database cannot
    show them yet."""

    def __init__(self, intake: Intake, batch: BatchRecord) -> None:
        self.intake = intake
        self.batch = batch
        self.next_sequence = batch.last_chunk_sequence + 1
        self.next_number = batch.payment_count + 1
        self._pending_references: frozenset[str] = frozenset()

    @property
    def payment_count(self) -> int:
        """Payments of the chunks prepared so far (stored, or committing)."""
        return self.next_number - 1

    async def prepare(
        self, chunk: api_pb.PaymentChunk, *, rejected: Mapping[int, tuple[str, str]] | None = None
    ) -> PreparedChunk | None:
        """The next chunk, validated and ready to commit; None for a chunk already stored (sent again by a
        resuming client: acknowledge it, store nothing). `rejected` holds rejections decided beforehand,
        (reason code, message) by the payment's index in the chunk. Refused: a chunk too large, numbered
        below 1, or after a gap."""
        _check_chunk(chunk)
        if chunk.sequence < self.next_sequence:
            return None
        if chunk.sequence > self.next_sequence:
            raise _out_of_order(OutOfOrderChunk(self.next_sequence, chunk.sequence))
        prepared = await self.intake.prepare(
            self.batch,
            chunk,
            first_number=self.next_number,
            pending_references=self._pending_references,
            rejected=rejected,
        )
        self.next_sequence += 1
        self.next_number += len(prepared.rows)
        self._pending_references = prepared.accepted_references
        return prepared

    async def commit(self, prepared: PreparedChunk) -> ChunkOutcome:
        """Stores a prepared chunk; Refused if it is out of order or the upload has ended meanwhile."""
        try:
            outcome = await self.intake.commit(self.batch.id, prepared)
        except OutOfOrderChunk as exc:
            raise _out_of_order(exc) from None
        if not outcome.duplicate and outcome.batch.state is not BatchState.UPLOADING:
            raise Refused(Problem.PRECONDITION, "the batch's upload is already complete", "UPLOAD_COMPLETE")
        return outcome

    async def add(
        self, chunk: api_pb.PaymentChunk, *, rejected: Mapping[int, tuple[str, str]] | None = None
    ) -> ChunkOutcome | None:
        """Prepares and commits the next chunk; None for a chunk already stored."""
        prepared = await self.prepare(chunk, rejected=rejected)
        return None if prepared is None else await self.commit(prepared)


def _check_chunk(chunk: api_pb.PaymentChunk) -> None:
    if len(chunk.payments) > MAX_PAYMENTS_PER_CHUNK:
        raise Refused(
            Problem.INVALID,
            f"a chunk holds at most {MAX_PAYMENTS_PER_CHUNK} payments",
            "CHUNK_TOO_LARGE",
            violations=[("chunk.payments", f"{len(chunk.payments)} payments")],
        )
    if chunk.sequence < 1:
        raise Refused(
            Problem.INVALID,
            "chunk.sequence starts at 1",
            "INVALID_SEQUENCE",
            violations=[("chunk.sequence", "< 1")],
        )


def _out_of_order(exc: OutOfOrderChunk) -> Refused:
    return Refused(
        Problem.PRECONDITION,
        str(exc),
        "CHUNK_OUT_OF_ORDER",
        details={"expected_sequence": str(exc.expected)},
    )
