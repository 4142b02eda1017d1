"""Intake of one chunk: validate each payment, route it, write the chunk and its outbox work at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2

from gpo_kernel import tracing
from gpo_kernel.reasons import Reason
from gpo_server.domain.cycles import beneficiary_key
from gpo_server.domain.money import MAX_BATCH_TOTAL_HUNDREDTHS, InvalidAmount, format_amount, parse_amount
from gpo_server.domain.routing import Router
from gpo_server.domain.states import BatchState, PaymentStatus
from gpo_server.domain.validation import Rejection, nfc, validate_metadata, validate_payment
from gpo_server.observability import metrics
from gpo_server.storage.store import (
    BatchRecord,
    BeneficiaryTaken,
    NewPayment,
    NewWorkChunk,
    ReferenceTaken,
    Store,
)
from gpo_server.work import work_chunks

MAX_PAYMENTS_PER_CHUNK = 10_000
YIELD_EVERY = 256  # payments validated between turns given to other tasks
ACCEPTED, REJECTED = PaymentStatus.ACCEPTED.value, PaymentStatus.REJECTED.value


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What happened to a chunk: stored (or already stored before), with its rejections."""

    duplicate: bool
    stored: int
    rejections: list[api_pb.PaymentRejection]
    batch: BatchRecord


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """A validated chunk, ready to commit: its rows, outbox work and rejections."""

    sequence: int
    first_number: int
    rows: list[NewPayment]
    work: list[NewWorkChunk]
    rejections: list[api_pb.PaymentRejection]
    received_total: int
    # The batch's received total this chunk was prepared against; the chunk keeps the sum under the
    # batch maximum only if the batch still holds that much when it commits.
    total_before: int
    accepted_references: frozenset[str]
    # The chunk as received, kept until it commits: if a reference turns out to be taken already, the
    # chunk is prepared again against the database.
    source: api_pb.PaymentChunk
    checked_database: bool
    # Rejections decided before intake, (reason code, message) by index in the chunk: kept for a repeat.
    rejected: Mapping[int, tuple[str, str]] | None = None
    # (number, beneficiary key) of the accepted payments, when the batch's cycle pays each beneficiary once.
    beneficiaries: list[tuple[int, str]] | None = None


class _BatchTotalMoved(Exception):
    """At commit the batch held more than the chunk was prepared against, so it could pass the maximum."""

    def __init__(self, total_before: int) -> None:
        super().__init__(f"the batch holds {total_before} hundredths already")
        self.total_before = total_before


class OutOfOrderChunk(Exception):
    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"chunk sequence {got} sent; the next expected is {expected}")
        self.expected = expected


def idempotency_key(batch_uid: str, reference_id: str) -> str:
    """Stable per payment: the same batch and reference always give the same key, a UUID (version 5,
    namespace = the batch) because several rails require UUID transfer ids."""
    return uuid5(uuid.UUID(batch_uid).bytes, reference_id)


def uuid5(namespace: bytes, name: str) -> str:
    """uuid.uuid5(namespace, name) as a string, without building UUID objects: it runs once per payment."""
    digest = bytearray(hashlib.sha1(namespace + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Intake:
    def __init__(
        self,
        store: Store,
        router: Router,
        work_chunk_size: int = 1000,
        chunk_sizes: Mapping[str, int] | None = None,
        max_concurrent_commits: int = 4,
    ) -> None:
        self.store = store
        self.router = router
        self.work_chunk_size = work_chunk_size
        self.chunk_sizes = dict(chunk_sizes or {})
        # Many uploads at once must not take every pooled connection (watchers, claims and results need
        # theirs); two cores gain nothing from more COPYs at a time than this anyway.
        self._commit_slots = asyncio.Semaphore(max_concurrent_commits)
        # Whether a (program, cycle) pays each beneficiary once; fixed when the cycle is created.
        self._once_per_beneficiary: dict[tuple[str, str], bool] = {}

    async def _pays_once(self, batch: BatchRecord) -> bool:
        """Whether the batch's cycle pays each beneficiary once (False for a batch without a cycle)."""
        if not batch.cycle:
            return False
        key = (batch.program, batch.cycle)
        if key not in self._once_per_beneficiary:
            cycle = await self.store.get_cycle(batch.program, batch.cycle)
            self._once_per_beneficiary[key] = cycle is not None and not cycle.allow_repeat_payments
        return self._once_per_beneficiary[key]

    async def store_chunk(self, batch_id: int, chunk: api_pb.PaymentChunk) -> ChunkOutcome:
        """Validates and stores one chunk, all or nothing (prepare, then commit)."""
        batch = await self.store.get_batch_by_id(batch_id)
        if chunk.sequence <= batch.last_chunk_sequence:
            return ChunkOutcome(duplicate=True, stored=0, rejections=[], batch=batch)
        prepared = await self.prepare(batch, chunk, first_number=batch.payment_count + 1)
        return await self.commit(batch_id, prepared)

    async def prepare(
        self,
        batch: BatchRecord,
        chunk: api_pb.PaymentChunk,
        *,
        first_number: int,
        pending_references: frozenset[str] = frozenset(),
        check_database: bool = False,
        total_before: int | None = None,
        rejected: Mapping[int, tuple[str, str]] | None = None,
    ) -> PreparedChunk:
        """The CPU half of intake: validation, routing, rows and work chunks, numbered from first_number.
        An upload stream prepares chunk N+1 while chunk N commits; `pending_references` are the references
        that chunk N claims, which the database cannot show yet.

        References already stored are not looked up first: the batch's unique index refuses them at commit,
        which then prepares the chunk again with `check_database`. Duplicates across chunks are rare, and a
        lookup per chunk cost a scan of the growing batch whenever PostgreSQL's statistics lagged.

        `total_before` is what the batch holds before this chunk (by default what `batch` shows); a payment
        that would take the batch past MAX_BATCH_TOTAL_HUNDREDTHS is rejected. Commit checks it again.

        `rejected` holds rejections decided before intake (G2P Connect's), (reason code, message) by the
        payment's index in the chunk: those payments are stored REJECTED with that reason, as they came."""
        refs = [nfc(p.reference_id) for p in chunk.payments]
        taken = await self.store.existing_references(batch.id, refs) if check_database else set()
        taken.update(pending_references.intersection(refs))
        before = batch.received_total_hundredths if total_before is None else total_before
        once = await self._pays_once(batch)
        rows, work, rejections, total, beneficiaries = await self._build(
            batch, chunk.payments, taken, first_number, before, rejected or {}, once
        )
        accepted = frozenset(r.reference_id for r in rows if r.status == ACCEPTED)
        return PreparedChunk(
            chunk.sequence,
            first_number,
            rows,
            work,
            rejections,
            total,
            before,
            accepted,
            chunk,
            check_database,
            rejected,
            beneficiaries if once else None,
        )

    async def commit(self, batch_id: int, prepared: PreparedChunk) -> ChunkOutcome:
        """The durable half: one transaction, under the batch's row lock, after re-checking that this chunk
        is the next one and that nothing else was stored meanwhile."""
        try:
            async with self._commit_slots, self.store.chunk_transaction(batch_id) as tx:
                batch = tx.batch
                expected = batch.last_chunk_sequence + 1
                if prepared.sequence < expected:
                    return ChunkOutcome(duplicate=True, stored=0, rejections=[], batch=batch)
                if batch.state is not BatchState.UPLOADING:
                    # Completed or cancelled: store nothing; the caller answers UPLOAD_COMPLETE.
                    return ChunkOutcome(duplicate=False, stored=0, rejections=[], batch=batch)
                if prepared.sequence > expected or batch.payment_count + 1 != prepared.first_number:
                    raise OutOfOrderChunk(expected, prepared.sequence)
                held = batch.received_total_hundredths
                if (
                    held != prepared.total_before
                    and held + prepared.received_total > MAX_BATCH_TOTAL_HUNDREDTHS
                ):
                    raise _BatchTotalMoved(held)
                await tx.write(
                    prepared.sequence,
                    prepared.rows,
                    prepared.work,
                    prepared.received_total,
                    prepared.beneficiaries or (),
                )
        except BeneficiaryTaken as held:
            # Other payments hold some of these beneficiaries in the cycle (paid, or on their way): those
            # payments are rejected, and the chunk is decided again (the rest may meet others meanwhile).
            decided = dict(prepared.rejected or {})
            for number in held.numbers:
                decided[number - prepared.first_number] = (Reason.BENEFICIARY_DUPLICATE, _BENEFICIARY_HELD)
            again = await self.prepare(
                batch,
                prepared.source,
                first_number=prepared.first_number,
                check_database=prepared.checked_database,
                rejected=decided,
            )
            return await self.commit(batch_id, again)
        except ReferenceTaken:
            if prepared.checked_database:
                raise  # the batch row lock keeps other writers out: a checked chunk cannot collide
            # An earlier chunk stored some of these references: look them up and reject those payments.
            again = await self.prepare(
                batch,
                prepared.source,
                first_number=prepared.first_number,
                check_database=True,
                rejected=prepared.rejected,
            )
            return await self.commit(batch_id, again)
        except _BatchTotalMoved as moved:
            # Prepared while the previous chunk was committing: decide again against what is stored.
            again = await self.prepare(
                batch,
                prepared.source,
                first_number=prepared.first_number,
                check_database=prepared.checked_database,
                total_before=moved.total_before,
                rejected=prepared.rejected,
            )
            return await self.commit(batch_id, again)
        rejected = len(prepared.rejections)
        metrics.INTAKE_PAYMENTS.labels("accepted").inc(len(prepared.rows) - rejected)
        metrics.INTAKE_PAYMENTS.labels("rejected").inc(rejected)
        return ChunkOutcome(
            duplicate=False, stored=len(prepared.rows), rejections=prepared.rejections, batch=batch
        )

    async def _build(
        self,
        batch: BatchRecord,
        inputs: Sequence[api_pb.PaymentInput],
        taken: set[str],
        first_number: int,
        total_before: int,
        decided: Mapping[int, tuple[str, str]],
        once_per_beneficiary: bool = False,
    ) -> tuple[
        list[NewPayment], list[NewWorkChunk], list[api_pb.PaymentRejection], int, list[tuple[int, str]]
    ]:
        rows: list[NewPayment] = []
        # (number, key) of accepted payments, when the cycle pays each beneficiary once; their keys.
        beneficiaries: list[tuple[int, str]] = []
        paid: set[str] = set()
        rejections: list[api_pb.PaymentRejection] = []
        groups: dict[tuple[str, dt.datetime | None], list[rail_pb2.WorkItem]] = defaultdict(list)
        seen: set[str] = set()
        namespace = uuid.UUID(batch.uid).bytes  # for idempotency_key(), computed once per chunk
        received_total = 0  # of every well-formed amount received, checked against the declared total
        room = MAX_BATCH_TOTAL_HUNDREDTHS - total_before  # what the batch may still take, in hundredths
        amount: int | None
        number = first_number - 1
        route = self.router.rail_for
        default_payer = batch.payer_fa
        for index, p in enumerate(inputs):
            if index % YIELD_EVERY == YIELD_EVERY - 1:
                # Let the previous chunk's commit take its turns on the event loop (each of its statements
                # is a round trip): otherwise it waits for this whole chunk and intake runs serially.
                await asyncio.sleep(0)
            # Each protobuf field is read once: on a million payments every attribute access counts.
            number += 1
            # References and names are stored in NFC, so look-alike spellings are one reference.
            ref, payee_fa, amount_text, currency = nfc(p.reference_id), p.payee_fa, p.amount, p.currency_code
            payer_fa = p.payer_fa or default_payer
            verdict = validate_payment(p, payer_fa)
            metadata = dict(p.metadata) if p.metadata else None
            if metadata and not isinstance(verdict, Rejection):
                verdict = validate_metadata(metadata) or verdict
            amount_refused = False
            if decided and index in decided:
                # Decided before intake: stored with its own reason. An amount GPO's rules refuse is still
                # kept out of every sum.
                amount_refused = isinstance(verdict, Rejection) and verdict.reason is Reason.AMOUNT_INVALID
                verdict = Rejection(*decided[index])
            rail = None
            if not isinstance(verdict, Rejection):
                if received_total + verdict.amount_hundredths > room:
                    verdict = Rejection(Reason.AMOUNT_INVALID, _OVER_BATCH_MAXIMUM)
                elif ref in seen or ref in taken:
                    verdict = Rejection(
                        Reason.REFERENCE_ID_DUPLICATE, "reference_id already used in this batch"
                    )
                elif (rail := route(payee_fa)) is None:
                    verdict = Rejection(
                        Reason.PAYEE_FA_UNROUTABLE, "no rail serves this payee financial address"
                    )
                elif once_per_beneficiary:
                    beneficiary = beneficiary_key(payee_fa, metadata)
                    if beneficiary in paid:
                        verdict = Rejection(Reason.BENEFICIARY_DUPLICATE, _BENEFICIARY_TWICE)
                        rail = None  # only accepted payments have a rail
                    else:
                        paid.add(beneficiary)
                        beneficiaries.append((number, beneficiary))
            schedule = p.schedule_time.ToDatetime(dt.UTC) if p.HasField("schedule_time") else None
            key = uuid5(namespace, ref)
            metadata_json = json.dumps(metadata, ensure_ascii=False) if metadata else None
            if isinstance(verdict, Rejection):
                if amount_refused or verdict.reason is Reason.AMOUNT_INVALID:
                    amount = None
                else:
                    amount = _amount_or_none(amount_text)
                if amount is not None and received_total + amount > room:
                    amount = None  # kept out of every sum, as the batch cannot hold it
                received_total += amount or 0
                rejections.append(
                    api_pb.PaymentRejection(
                        reference_id=ref[:128],
                        index=index,
                        reason_code=verdict.reason,
                        message=verdict.message,
                    )
                )
                # Rejected rows keep bounded copies of what was sent, for the report.
                rows.append(
                    NewPayment(
                        number,
                        _storable(ref[:256]),
                        key,
                        _storable(payer_fa[:512]),
                        _storable(payee_fa[:512]),
                        amount,
                        _storable(currency[:8]),
                        _storable(p.payee_name[:512]),
                        _storable(p.note[:2048]),
                        _storable(p.purpose[:256]),
                        schedule,
                        metadata_json,
                        rail,
                        REJECTED,
                        str(verdict.reason),
                        verdict.message,
                    )
                )
                continue
            amount = verdict.amount_hundredths
            received_total += amount
            seen.add(ref)  # only accepted payments claim a reference, as in the store
            assert rail is not None
            payee_name, note, purpose = nfc(p.payee_name), nfc(p.note), nfc(p.purpose)
            groups[(rail, schedule)].append(
                rail_pb2.WorkItem(
                    payment_number=number,
                    idempotency_key=key,
                    reference_id=ref,
                    payer_fa=payer_fa,
                    payee_fa=payee_fa,
                    amount=format_amount(amount),
                    currency_code=currency,
                    payee_name=payee_name,
                    note=note,
                    purpose=purpose,
                )
            )
            rows.append(
                NewPayment(
                    number,
                    ref,
                    key,
                    payer_fa,
                    payee_fa,
                    amount,
                    currency,
                    payee_name,
                    note,
                    purpose,
                    schedule,
                    metadata_json,
                    rail,
                    ACCEPTED,
                    "",
                    "",
                )
            )
        return rows, self._work_chunks(batch, groups), rejections, received_total, beneficiaries

    def _work_chunks(
        self, batch: BatchRecord, groups: dict[tuple[str, dt.datetime | None], list[rail_pb2.WorkItem]]
    ) -> list[NewWorkChunk]:
        work: list[NewWorkChunk] = []
        # The upload's trace goes with its work (None when tracing is off), so the relay can continue it.
        trace_context = tracing.traceparent()
        for (rail, not_before), items in groups.items():
            size = self.chunk_sizes.get(rail, self.work_chunk_size)
            work.extend(
                work_chunks(batch.uid, rail, items, size, not_before=not_before, trace_context=trace_context)
            )
        return work


_OVER_BATCH_MAXIMUM = (
    f"the batch's amounts would add up to more than {format_amount(MAX_BATCH_TOTAL_HUNDREDTHS)}, "
    "the most one batch may carry: split the disbursement into several batches"
)


_BENEFICIARY_HELD = (
    "the beneficiary was already paid, or is being paid, in this batch's cycle; the cycle pays each "
    "beneficiary once"
)
_BENEFICIARY_TWICE = (
    "another payment of this batch pays the same beneficiary; the cycle pays each beneficiary once"
)


def _storable(text: str) -> str:
    """PostgreSQL text cannot hold NUL (it would fail the whole chunk): a rejected copy shows U+FFFD."""
    return text.replace("\x00", "\ufffd")


def _amount_or_none(text: str) -> int | None:
    try:
        return parse_amount(text)
    except InvalidAmount:
        return None
