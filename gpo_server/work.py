"""Work chunks: the protobuf messages GPO puts on a rail's queue, built from payments."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from gpo.v1 import rail_pb2

from gpo_server.domain.money import format_amount
from gpo_server.storage.store import NewWorkChunk, PaymentRow


def work_item(row: Any) -> rail_pb2.WorkItem:
    """A WorkItem from a stored payment row (anything with the payments table's column names)."""
    return rail_pb2.WorkItem(
        payment_number=row.number,
        idempotency_key=row.idempotency_key,
        reference_id=row.reference_id,
        payer_fa=row.payer_fa,
        payee_fa=row.payee_fa,
        amount=format_amount(row.amount_hundredths),
        currency_code=row.currency_code,
        payee_name=row.payee_name,
        note=row.note,
        purpose=row.purpose,
    )


def work_chunks(
    batch_uid: str,
    rail: str,
    items: Sequence[rail_pb2.WorkItem],
    size: int,
    *,
    not_before: dt.datetime | None = None,
    verify_only: bool = False,
    trace_context: str | None = None,
) -> Iterable[NewWorkChunk]:
    """Splits one rail's items into chunks of at most `size`, each serialised once, here."""
    now = Timestamp()
    now.GetCurrentTime()
    for start in range(0, len(items), size):
        chunk_id = str(uuid.uuid4())
        message = rail_pb2.WorkChunk(
            chunk_id=chunk_id,
            rail=rail,
            batch=f"batches/{batch_uid}",
            items=items[start : start + size],
            create_time=now,
            verify_only=verify_only,
        )
        yield NewWorkChunk(chunk_id, rail, message.SerializeToString(), not_before, trace_context)


class RailWorkBuilder:
    """Builds outbox work for stored payments (operator retries, sweeps): per rail, in that rail's chunk
    size. Satisfies storage's WorkBuilder."""

    def __init__(self, chunk_sizes: Mapping[str, int], default_size: int) -> None:
        self.chunk_sizes = dict(chunk_sizes)
        self.default_size = default_size

    def __call__(self, batch_uid: str, rows: Sequence[PaymentRow], verify_only: bool) -> list[NewWorkChunk]:
        by_rail: dict[str, list[rail_pb2.WorkItem]] = defaultdict(list)
        for row in rows:
            by_rail[row.rail].append(work_item(row))
        work: list[NewWorkChunk] = []
        for rail, items in by_rail.items():
            size = self.chunk_sizes.get(rail, self.default_size)
            work.extend(work_chunks(batch_uid, rail, items, size, verify_only=verify_only))
        return work
