"""Intake of one chunk: validate each payment, route it, write the chunk and its outbox work at once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpo.v1 import disbursement_service_pb2 as api_pb
from gpo.v1 import rail_pb2

from gpo_server.domain.money import InvalidAmount, format_amount, parse_amount
from gpo_server.domain.reasons import Reason
from gpo_server.domain.routing import Router
from gpo_server.domain.states import BatchState, PaymentStatus
from gpo_server.domain.validation import Rejection, validate_metadata, validate_payment
from gpo_server.storage.store import BatchRecord, NewPayment, NewWorkChunk, Store
from gpo_server.work import work_chunks

MAX_PAYMENTS_PER_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What happened to a chunk: stored (or already stored before), with its rejections."""

    duplicate: bool
    stored: int
    rejections: list[api_pb.PaymentRejection]
    batch: BatchRecord


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
    ) -> None:
        self.store = store
        self.router = router
        self.work_chunk_size = work_chunk_size
        self.chunk_sizes = dict(chunk_sizes or {})

    async def store_chunk(self, batch_id: int, chunk: api_pb.PaymentChunk) -> ChunkOutcome:
        async with self.store.chunk_transaction(batch_id) as tx:
            batch = tx.batch
            expected = batch.last_chunk_sequence + 1
            if chunk.sequence < expected:
                return ChunkOutcome(duplicate=True, stored=0, rejections=[], batch=batch)
            if batch.state is not BatchState.UPLOADING:
                # Completed or cancelled: store nothing; the caller answers UPLOAD_COMPLETE.
                return ChunkOutcome(duplicate=False, stored=0, rejections=[], batch=batch)
            if chunk.sequence > expected:
                raise OutOfOrderChunk(expected, chunk.sequence)
            refs = [p.reference_id for p in chunk.payments]
            taken = await tx.existing_references(refs)
            rows, work, rejections, total = self._build(batch, chunk.payments, taken)
            await tx.write(chunk.sequence, rows, work, total)
        return ChunkOutcome(duplicate=False, stored=len(rows), rejections=rejections, batch=batch)

    def _build(
        self, batch: BatchRecord, inputs: Sequence[api_pb.PaymentInput], taken: set[str]
    ) -> tuple[list[NewPayment], list[NewWorkChunk], list[api_pb.PaymentRejection], int]:
        rows: list[NewPayment] = []
        rejections: list[api_pb.PaymentRejection] = []
        groups: dict[tuple[str, dt.datetime | None], list[rail_pb2.WorkItem]] = defaultdict(list)
        seen: set[str] = set()
        namespace = uuid.UUID(batch.uid).bytes  # for idempotency_key(), computed once per chunk
        received_total = 0
        amount: int | None
        number = batch.payment_count
        for index, p in enumerate(inputs):
            number += 1
            payer_fa = p.payer_fa or batch.payer_fa
            try:
                received_total += parse_amount(p.amount)
            except InvalidAmount:
                pass
            verdict = validate_payment(p, payer_fa)
            if not isinstance(verdict, Rejection) and p.metadata:
                verdict = validate_metadata(dict(p.metadata)) or verdict
            rail = None
            if not isinstance(verdict, Rejection):
                if p.reference_id in seen or p.reference_id in taken:
                    verdict = Rejection(
                        Reason.REFERENCE_ID_DUPLICATE, "reference_id already used in this batch"
                    )
                elif (rail := self.router.rail_for(p.payee_fa)) is None:
                    verdict = Rejection(
                        Reason.PAYEE_FA_UNROUTABLE, "no rail serves this payee financial address"
                    )
            schedule = p.schedule_time.ToDatetime(dt.UTC) if p.HasField("schedule_time") else None
            key = uuid5(namespace, p.reference_id)
            if isinstance(verdict, Rejection):
                rejections.append(
                    api_pb.PaymentRejection(
                        reference_id=p.reference_id[:128],
                        index=index,
                        reason_code=verdict.reason,
                        message=verdict.message,
                    )
                )
                status, reason, message = PaymentStatus.REJECTED, str(verdict.reason), verdict.message
                amount = None if verdict.reason is Reason.AMOUNT_INVALID else _amount_or_none(p.amount)
            else:
                seen.add(p.reference_id)  # only accepted payments claim a reference, as in the store
                status, reason, message = PaymentStatus.ACCEPTED, "", ""
                amount = verdict.amount_hundredths
                assert rail is not None
                groups[(rail, schedule)].append(
                    rail_pb2.WorkItem(
                        payment_number=number,
                        idempotency_key=key,
                        reference_id=p.reference_id,
                        payer_fa=payer_fa,
                        payee_fa=p.payee_fa,
                        amount=format_amount(verdict.amount_hundredths),
                        currency_code=p.currency_code,
                        payee_name=p.payee_name,
                        note=p.note,
                        purpose=p.purpose,
                    )
                )
            rows.append(
                NewPayment(
                    number=number,
                    # Rejected rows keep bounded copies of what was sent, for the report.
                    reference_id=p.reference_id[:256],
                    idempotency_key=key,
                    payer_fa=payer_fa[:512],
                    payee_fa=p.payee_fa[:512],
                    amount_hundredths=amount,
                    currency_code=p.currency_code[:8],
                    payee_name=p.payee_name[:512],
                    note=p.note[:2048],
                    purpose=p.purpose[:256],
                    schedule_time=schedule,
                    metadata_json=json.dumps(dict(p.metadata), ensure_ascii=False) if p.metadata else None,
                    rail=rail,
                    status=status.value,
                    reason_code=reason,
                    reason_message=message,
                )
            )
        return rows, self._work_chunks(batch, groups), rejections, received_total

    def _work_chunks(
        self, batch: BatchRecord, groups: dict[tuple[str, dt.datetime | None], list[rail_pb2.WorkItem]]
    ) -> list[NewWorkChunk]:
        work: list[NewWorkChunk] = []
        for (rail, not_before), items in groups.items():
            size = self.chunk_sizes.get(rail, self.work_chunk_size)
            work.extend(work_chunks(batch.uid, rail, items, size, not_before=not_before))
        return work


def _amount_or_none(text: str) -> int | None:
    try:
        return parse_amount(text)
    except InvalidAmount:
        return None
