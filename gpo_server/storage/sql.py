"""SQL helpers every part of the Store uses, public to GPO's other stores (G2P Connect's among them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    Update,
    and_,
    any_,
    case,
    insert,
    literal,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gpo_server.domain.states import (
    BatchState,
    PaymentStatus,
    batch_sources_of,
    can_move_batch,
    sources_of,
)
from gpo_server.storage import audit as audit_trail
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.records import NewWorkChunk
from gpo_server.storage.tables import (
    batches,
    outbox,
    payments,
)

S = PaymentStatus


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StorePart:
    """What every part of the Store shares: one engine, and the audit trail appended inside its
    transactions."""

    engine: AsyncEngine
    is_postgres: bool
    # Rails whose sidecar blocks a batch's funds with the sponsor bank before it dispatches (the rails
    # file's `funds_control`; docs/TREASURY.md). Set once at start.
    funds_rails: frozenset[str] = frozenset()

    async def _audit(self, conn: AsyncConnection, event: AuditEvent) -> None:
        """Appends to the audit trail inside `conn`'s transaction: the last statement before its commit."""
        await audit_trail.append(conn, event, is_postgres=self.is_postgres)


async def insert_work(
    conn: AsyncConnection, batch_id: int, work: Sequence[NewWorkChunk], now: dt.datetime
) -> None:
    """The one outbox INSERT: intake, retries, re-drives, sweeps and resolutions all write work here."""
    if work:
        await conn.execute(
            insert(outbox),
            [
                {
                    "batch_id": batch_id,
                    "chunk_id": w.chunk_id,
                    "rail": w.rail,
                    "payload": w.payload,
                    "not_before": w.not_before,
                    "create_time": now,
                    "trace_context": w.trace_context,
                }
                for w in work
            ],
        )


async def count_unfinished(conn: AsyncConnection, batch_id: int, change: int = 0) -> None:
    """Adds `change` to the batch's unfinished count and moves its state to match, in one statement: a
    PROCESSING batch at zero is COMPLETED, a COMPLETED one with payments again (a retry) PROCESSING.

    The UPDATE locks the batch row and its SET reads the row it locked, so concurrent settlements of one
    batch count one after another and exactly one of them sees zero."""
    remaining = batches.c.unfinished_count + change
    completes = and_(batches.c.state == BatchState.PROCESSING.value, remaining == 0)
    reopens = and_(batches.c.state == BatchState.COMPLETED.value, remaining > 0)
    await conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(
            unfinished_count=remaining,
            state=case(
                (completes, BatchState.COMPLETED.value),
                (reopens, BatchState.PROCESSING.value),
                else_=batches.c.state,
            ),
            update_time=case((completes | reopens, utcnow()), else_=batches.c.update_time),
        )
    )


@asynccontextmanager
async def cached_plans(conn: AsyncConnection) -> AsyncIterator[None]:
    """Inside this block of a PostgreSQL transaction, prepared statements may use cached generic plans.

    A foreign key check runs one query per inserted row; with the connection's custom plans (see
    Store.open) it was planned afresh for every row: about 70% of PostgreSQL's CPU in an intake COPY.
    Wrap only statements whose plans do not depend on their parameters' values."""
    if conn.dialect.name != "postgresql":
        yield
        return
    await conn.execute(text("SET LOCAL plan_cache_mode = auto"))
    yield
    await conn.execute(text("SET LOCAL plan_cache_mode TO DEFAULT"))  # the connection's own setting


def in_values(column: Any, values: Sequence[Any], is_postgres: bool, item_type: Any) -> Any:
    """column IN values: on PostgreSQL as = ANY(array), one parameter whatever the chunk size, so the
    statement is prepared once instead of once per list length."""
    if is_postgres:
        return column == any_(literal(list(values), ARRAY(item_type)))
    return column.in_(values)


async def hold_sqlite_writer(conn: AsyncConnection, batch_id: int) -> None:
    """SQLite takes its single writer lock at the first write; take it now, so that what the transaction
    reads before it writes cannot go stale under a concurrent writer (PostgreSQL locks rows instead)."""
    await conn.execute(text("UPDATE batches SET update_time = update_time WHERE id = :id"), {"id": batch_id})


def locked(query: Select[Any], is_postgres: bool) -> Select[Any]:
    return query.with_for_update() if is_postgres else query


def batch_move(batch_id: int, source: BatchState, target: BatchState) -> Update:
    """The UPDATE that moves one batch from `source` to `target`, a move of BATCH_TRANSITIONS; it matches no
    row when the batch has left `source` meanwhile (its rowcount says whether it moved)."""
    if not can_move_batch(source, target):
        raise ValueError(f"a batch never moves from {source.value} to {target.value}")
    return (
        update(batches)
        .where(batches.c.id == batch_id, batches.c.state == source.value)
        .values(state=target.value, update_time=utcnow())
    )


@dataclass(frozen=True, slots=True)
class Cancelled:
    payments: int  # payments moved to CANCELLED
    batch_ended: bool  # the batch moved to CANCELLED here (not before, by another cancel)


async def cancel_in(
    conn: AsyncConnection,
    batch_id: int,
    now: dt.datetime,
    reason_message: str = "batch cancelled",
) -> Cancelled:
    """Cancels a batch inside `conn`'s transaction: payments no rail has claimed become CANCELLED (claimed
    ones finish on their rail) and the batch CANCELLED from any state it may leave for it."""
    # Unpublished work is dropped: its payments are all cancelled below. Outbox rows first, then
    # payments: the relay's order (publishing), so the two never deadlock on PostgreSQL.
    await conn.execute(
        update(outbox)
        .where(outbox.c.batch_id == batch_id, outbox.c.publish_time.is_(None))
        .values(publish_time=now)
    )
    cancelled = await conn.execute(
        update(payments)
        .where(
            payments.c.batch_id == batch_id,
            payments.c.status.in_([s.value for s in sources_of(S.CANCELLED)]),
        )
        .values(
            status=S.CANCELLED.value,
            reason_code="rjct.batch.cancelled",
            reason_message=reason_message,
            update_time=now,
        )
    )
    ended = await conn.execute(
        update(batches)
        .where(
            batches.c.id == batch_id,
            batches.c.state.in_([s.value for s in batch_sources_of(BatchState.CANCELLED)]),
        )
        .values(state=BatchState.CANCELLED.value, update_time=now)
    )
    # After the state: a CANCELLED batch stays CANCELLED whatever its count.
    count = max(cancelled.rowcount, 0)
    await count_unfinished(conn, batch_id, -count)
    return Cancelled(count, ended.rowcount == 1)
