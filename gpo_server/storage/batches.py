"""The Store's part for batches and their payments: open, find, list and read them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from typing import Any

from sqlalchemy import (
    Row,
    Text,
    and_,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.filters import Filter
from gpo_server.domain.states import (
    BatchState,
    PaymentStatus,
)
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.records import (
    BatchRecord,
    NewBatch,
    StatusTotal,
)
from gpo_server.storage.sql import (
    StorePart,
    in_values,
    utcnow,
)
from gpo_server.storage.tables import (
    batches,
    payment_status_changes,
    payments,
)


class BatchStore(StorePart):
    """Batches and their payments: open, find, list, read."""

    async def create_or_get_batch(
        self, new: NewBatch, audit: AuditEvent | None = None
    ) -> tuple[BatchRecord, bool]:
        """Returns (batch, created). The same program and request_id always give the same batch; `audit`
        is recorded with a batch this call creates."""
        existing = await self.find_batch(new.program, new.request_id)
        if existing is not None:
            return existing, False
        now = utcnow()
        values = {
            "uid": str(uuid.uuid4()),
            "state": BatchState.UPLOADING.value,
            "create_time": now,
            "update_time": now,
            **{f.name: getattr(new, f.name) for f in fields(new)},
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(batches).values(**values))
                if audit is not None:
                    await self._audit(conn, replace(audit, batch_uid=values["uid"]))
        except IntegrityError:
            # Another stream created it at the same moment: that one is the batch.
            found = await self.find_batch(new.program, new.request_id)
            if found is None:
                raise
            return found, False
        created = await self.find_batch(new.program, new.request_id)
        assert created is not None
        return created, True

    async def find_batch(self, program: str, request_id: str) -> BatchRecord | None:
        query = select(batches).where(batches.c.program == program, batches.c.request_id == request_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return BatchRecord.from_row(row) if row else None

    async def get_batch_by_id(self, batch_id: int) -> BatchRecord:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()
        return BatchRecord.from_row(row)

    async def existing_references(self, batch_id: int, reference_ids: Sequence[str]) -> set[str]:
        """Which of these references the batch's stored, non-rejected payments already use."""
        found: set[str] = set()
        async with self.engine.connect() as conn:
            for start in range(0, len(reference_ids), 5000):
                part = reference_ids[start : start + 5000]
                rows = await conn.execute(
                    select(payments.c.reference_id).where(
                        payments.c.batch_id == batch_id,
                        in_values(payments.c.reference_id, part, self.is_postgres, Text),
                        payments.c.rail.is_not(None),  # accepted: the unique index's own predicate
                    )
                )
                found.update(r for (r,) in rows)
        return found

    async def get_batch(self, uid: str) -> BatchRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(batches).where(batches.c.uid == uid))).first()
        return BatchRecord.from_row(row) if row else None

    async def expire_empty_uploads(self, older_than_s: float, limit: int = 1000) -> list[str]:
        """Deletes UPLOADING batches that never received a payment and have not changed for
        `older_than_s` seconds; returns their uids. No row anywhere refers to them (checked in the same
        statement), so nothing accepted is touched, and their request ids are free again."""
        from sqlalchemy import delete

        from gpo_server.storage.tables import metadata

        cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
        empty = [
            batches.c.state == BatchState.UPLOADING.value,
            batches.c.payment_count == 0,
            batches.c.last_chunk_sequence == 0,
            batches.c.update_time < cutoff,
            *(
                ~select(fk.parent).where(fk.parent == batches.c.id).exists()
                for table in metadata.sorted_tables
                for fk in table.foreign_keys
                if fk.column is batches.c.id
            ),
        ]
        async with self.engine.begin() as conn:
            found = (await conn.execute(select(batches.c.id, batches.c.uid).where(*empty).limit(limit))).all()
            if not found:
                return []
            ids = [i for i, _ in found]
            gone = await conn.execute(
                delete(batches).where(batches.c.id.in_(ids), *empty).returning(batches.c.uid)
            )
            return [uid for (uid,) in gone]

    async def list_batches(
        self,
        *,
        programs: Iterable[str] | None,
        program: str,
        after_id: int | None,
        limit: int,
        where: Filter = (),
    ) -> list[BatchRecord]:
        """Newest first; `programs` None means every program, else only those; `where` on state, program
        and create_time."""
        query = select(batches).where(*_filter_clauses(where, _BATCH_COLUMNS))
        query = query.order_by(batches.c.id.desc()).limit(limit)
        if programs is not None:
            query = query.where(batches.c.program.in_(list(programs)))
        if program:
            query = query.where(batches.c.program == program)
        if after_id is not None:
            query = query.where(batches.c.id < after_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [BatchRecord.from_row(r) for r in rows]

    async def batch_totals(self, batch_id: int) -> list[StatusTotal]:
        async with self.engine.connect() as conn:
            return await read_batch_totals(conn, batch_id)

    async def list_payments(
        self, batch_id: int, *, where: Filter = (), after_number: int, limit: int
    ) -> list[Row[Any]]:
        """A batch's payments in upload order, after `after_number`, that `where` selects."""
        query = (
            select(payments)
            .where(
                payments.c.batch_id == batch_id,
                payments.c.number > after_number,
                *_filter_clauses(where, _PAYMENT_COLUMNS),
            )
            .order_by(payments.c.number)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def search_payments(
        self,
        *,
        programs: Iterable[str] | None,
        where: Filter,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[Row[Any]]:
        """Payments of every batch of `programs` (None: all) that `where` selects, newest batch first, each
        with its batch's `uid` and `program`. `where` should pin reference_id (ix_payments_reference)."""
        query = (
            select(payments, batches.c.uid, batches.c.program)
            .join(batches, batches.c.id == payments.c.batch_id)
            .where(*_filter_clauses(where, _PAYMENT_COLUMNS))
            .order_by(payments.c.batch_id.desc(), payments.c.number)
            .limit(limit)
        )
        if programs is not None:
            query = query.where(batches.c.program.in_(list(programs)))
        if after is not None:
            batch_id, number = after
            query = query.where(
                (payments.c.batch_id < batch_id)
                | and_(payments.c.batch_id == batch_id, payments.c.number > number)
            )
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def find_payment(self, batch_id: int, reference_id: str) -> Row[Any] | None:
        """The payment a name means: the accepted one when rejected duplicates share its reference."""
        query = (
            select(payments)
            .where(payments.c.batch_id == batch_id, payments.c.reference_id == reference_id)
            .order_by(payments.c.rail.is_(None), payments.c.number)
            .limit(1)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).one_or_none()

    async def get_payment(self, batch_id: int, number: int) -> Row[Any]:
        query = select(payments).where(payments.c.batch_id == batch_id, payments.c.number == number)
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).one()

    async def status_changes(
        self, batch_id: int, reference_id: str, *, after_id: int, limit: int
    ) -> tuple[Any, list[Row[Any]]] | None:
        """The payment named by its reference (the accepted one, when rejected duplicates share it) and its
        status changes after after_id, oldest first; None if the batch has no such payment."""
        find = (
            select(
                payments.c.number,
                payments.c.status,
                payments.c.update_time,
                payments.c.reason_code,
                payments.c.reason_message,
            )
            .where(payments.c.batch_id == batch_id, payments.c.reference_id == reference_id)
            .order_by(payments.c.rail.is_(None), payments.c.number)
            .limit(1)
        )
        async with self.engine.connect() as conn:
            payment = (await conn.execute(find)).one_or_none()
            if payment is None:
                return None
            changes = await conn.execute(
                select(payment_status_changes)
                .where(
                    payment_status_changes.c.batch_id == batch_id,
                    payment_status_changes.c.number == payment.number,
                    payment_status_changes.c.id > after_id,
                )
                .order_by(payment_status_changes.c.id)
                .limit(limit)
            )
            return payment, list(changes.all())


async def read_batch_totals(conn: AsyncConnection, batch_id: int) -> list[StatusTotal]:
    """Count and amount of a batch's payments per status and currency (GetBatch, webhook events)."""
    query = (
        select(
            payments.c.status,
            payments.c.currency_code,
            func.count(),
            func.coalesce(func.sum(payments.c.amount_hundredths), 0),
        )
        .where(payments.c.batch_id == batch_id)
        .group_by(payments.c.status, payments.c.currency_code)
    )
    rows = (await conn.execute(query)).all()
    return [StatusTotal(PaymentStatus(s), c, int(n), int(a)) for s, c, n, a in rows]


_PAYMENT_COLUMNS: dict[str, Any] = {
    "status": payments.c.status,
    "rail": payments.c.rail,
    "reference_id": payments.c.reference_id,
    "attention": payments.c.attention_reason,
    "update_time": payments.c.update_time,
}
_BATCH_COLUMNS: dict[str, Any] = {
    "state": batches.c.state,
    "program": batches.c.program,
    "create_time": batches.c.create_time,
}


def _filter_clauses(where: Filter, columns: dict[str, Any]) -> list[Any]:
    """A parsed AIP-160 filter as SQL: one clause per AND-term, each an OR of its comparisons."""
    clauses = []
    for group in where:
        alternatives = []
        for c in group:
            column = columns[c.field]
            if c.field == "attention":  # whether the payment names a reason it needs an operator
                alternatives.append(column != "" if c.value else column == "")
                continue
            value = c.value.value if isinstance(c.value, (PaymentStatus, BatchState)) else c.value
            alternatives.append(
                {
                    "=": column == value,
                    "!=": column != value,
                    "<": column < value,
                    "<=": column <= value,
                    ">": column > value,
                    ">=": column >= value,
                }[c.operator]
            )
        clauses.append(or_(*alternatives))
    return clauses
