"""The Store's part for intake: a chunk's transaction and the end of an upload."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
from sqlalchemy import (
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.states import (
    BatchState,
)
from gpo_server.storage.approvals import accepted_totals, read_policy
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.batches import BatchStore
from gpo_server.storage.cycles import (
    CycleRecord,
    check_cycle_at_finish,
    claim_beneficiaries,
    read_cycle,
)
from gpo_server.storage.funds import release_batch
from gpo_server.storage.records import (
    PAYMENT_COLUMNS,
    BatchRecord,
    BeneficiaryTaken,
    NewPayment,
    NewWorkChunk,
    ReferenceTaken,
)
from gpo_server.storage.sql import (
    S,
    batch_move,
    cached_plans,
    hold_sqlite_writer,
    insert_work,
    utcnow,
)
from gpo_server.storage.tables import (
    batches,
    payments,
)

# The partial unique index on (batch_id, reference_id) of accepted payments (tables.py).
REFERENCE_INDEX = "uq_payments_batch_reference"

# A batch at least this large refreshes the payments table's planner statistics when its upload ends.
ANALYZE_AFTER = 20_000


class IntakeStore(BatchStore):
    """An upload's writes: one chunk at a time, then the end of the upload."""

    @asynccontextmanager
    async def chunk_transaction(self, batch_id: int) -> AsyncIterator[ChunkTransaction]:
        """One intake chunk, all or nothing, with the batch row locked against a concurrent upload."""
        async with self.engine.begin() as conn:
            query = select(batches).where(batches.c.id == batch_id)
            if self.is_postgres:
                query = query.with_for_update()
            else:
                await hold_sqlite_writer(conn, batch_id)
            row = (await conn.execute(query)).one()
            batch = BatchRecord.from_row(row)
            cycle = await read_cycle(conn, batch.program, batch.cycle) if batch.cycle else None
            # Every statement of a chunk's transaction reads or writes by key: no plan depends on values.
            async with cached_plans(conn):
                yield ChunkTransaction(conn, batch, self.is_postgres, cycle)

    async def finish_upload(self, batch_id: int, audit: AuditEvent | None = None) -> BatchRecord:
        """Ends the upload if what arrived matches what was declared; the batch then starts dispatching.
        An upload with no payments stays open, so the same request_id can still send them. `audit` is
        recorded when the upload ends here.

        A batch of a cycle is checked first, under the cycle's row lock, in this transaction: its window,
        then its amounts against what the cycle has left (domain/cycles.py). CycleRefused (nothing changed:
        the batch stays UPLOADING, nothing of it is sent) when it does not fit."""
        async with self.engine.begin() as conn:
            query = select(batches).where(batches.c.id == batch_id)
            if self.is_postgres:
                query = query.with_for_update()  # the batch row, then the cycle's: the order everywhere
            else:
                await hold_sqlite_writer(conn, batch_id)
            row = (await conn.execute(query)).one()
            batch = BatchRecord.from_row(row)
            if (
                batch.state is BatchState.UPLOADING
                and batch.payment_count > 0
                and batch.upload_matches_declaration
            ):
                if batch.cycle:
                    await check_cycle_at_finish(conn, batch.id, batch.program, batch.cycle)
                # Maker-checker: the program's approval policy may hold the batch for approvers; else it
                # is released (funds block, or dispatch) by the one function that releases a batch.
                policy = await read_policy(conn, batch.program)
                needs_approval = False
                if policy is not None and policy.holds_anything:
                    totals, count = await accepted_totals(conn, batch_id)
                    needs_approval = policy.requires_approval(totals, count)
                if policy is not None and needs_approval:
                    await conn.execute(
                        batch_move(batch_id, BatchState.UPLOADING, BatchState.AWAITING_APPROVAL).values(
                            required_approvals=policy.required_approvals
                        )
                    )
                else:
                    await release_batch(
                        conn, batch_id, batch.uid, BatchState.UPLOADING, self.funds_rails, utcnow()
                    )
                if audit is not None:
                    detail = dict(audit.detail)
                    if policy is not None and needs_approval:
                        detail |= {
                            "state": BatchState.AWAITING_APPROVAL.value,
                            "required_approvals": policy.required_approvals,
                        }
                    await self._audit(
                        conn,
                        replace(audit, batch_uid=batch.uid, payment_count=batch.payment_count, detail=detail),
                    )
        found = await self.get_batch(batch.uid)
        assert found is not None
        if (
            self.is_postgres
            and found.state is not BatchState.UPLOADING
            and found.payment_count >= ANALYZE_AFTER
        ):
            # Until PostgreSQL's statistics know the new batch, it estimates a handful of rows for it and
            # plans dispatch's `number = ANY(...)` updates as scans of the whole batch, once per chunk.
            async with self.engine.begin() as conn:
                await conn.execute(text("ANALYZE payments"))
        return found


class ChunkTransaction:
    """What intake does inside one chunk's transaction."""

    def __init__(
        self, conn: AsyncConnection, batch: BatchRecord, is_postgres: bool, cycle: CycleRecord | None = None
    ) -> None:
        self.conn = conn
        self.batch = batch
        self.is_postgres = is_postgres
        self.cycle = cycle  # the batch's cycle, if it names one

    async def write(
        self,
        sequence: int,
        rows: Sequence[NewPayment],
        work: Sequence[NewWorkChunk],
        received_total_hundredths: int,
        beneficiaries: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Raises ReferenceTaken (the transaction is then unusable) when a reference is already stored, and
        BeneficiaryTaken (likewise) when another payment holds a beneficiary of `beneficiaries` ((number,
        key) of the accepted payments) in the batch's cycle."""
        now = utcnow()
        if beneficiaries and self.cycle is not None and not self.cycle.allow_repeat_payments:
            taken = await claim_beneficiaries(self.conn, self.cycle, self.batch.id, beneficiaries)
            if taken:
                raise BeneficiaryTaken(taken)
        if rows:
            if self.is_postgres:
                raw = await self.conn.get_raw_connection()
                try:
                    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                        "payments",
                        records=[(self.batch.id, *r, now) for r in rows],
                        columns=["batch_id", *PAYMENT_COLUMNS, "update_time"],
                    )
                except asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name == REFERENCE_INDEX:
                        raise ReferenceTaken(str(exc)) from exc
                    raise
            else:
                try:
                    await self.conn.execute(
                        insert(payments),
                        [{"batch_id": self.batch.id, "update_time": now, **_as_dict(r)} for r in rows],
                    )
                except IntegrityError as exc:
                    if "payments.reference_id" in str(exc.orig):
                        raise ReferenceTaken(str(exc.orig)) from exc
                    raise
        await insert_work(self.conn, self.batch.id, work, now)
        await self.conn.execute(
            update(batches)
            .where(batches.c.id == self.batch.id)
            .values(
                payment_count=batches.c.payment_count + len(rows),
                unfinished_count=batches.c.unfinished_count
                + sum(1 for r in rows if r.status == S.ACCEPTED.value),
                received_total_hundredths=batches.c.received_total_hundredths + received_total_hundredths,
                last_chunk_sequence=sequence,
                update_time=now,
            )
        )


def _as_dict(row: NewPayment) -> dict[str, Any]:
    return row._asdict()
