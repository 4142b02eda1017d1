"""G2P Connect's reads and writes, beside GPO's Store (same engine, its own tables from migration 0004)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Row, and_, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from gpo_server.domain.states import FINAL, BatchState, PaymentStatus
from gpo_server.storage.sql import cached_plans, utcnow
from gpo_server.storage.store import Store
from gpo_server.storage.tables import batches, g2p_callbacks, g2p_messages, g2p_reported, payments

FINAL_VALUES = [s.value for s in FINAL]
PENDING_VALUES = [s.value for s in PaymentStatus if s not in FINAL]


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: int
    sender_id: str
    message_id: str
    body_digest: str
    action: str
    correlation_id: str
    transaction_id: str
    sender_uri: str
    batch_id: int | None
    reported: bool
    create_time: dt.datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> MessageRecord:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class Callback:
    id: int
    message_id: int
    uri: str
    body: str
    attempts: int


# Builds the callbacks for newly final payments of one message: (uri, body) per callback.
ReportBuilder = Callable[[MessageRecord, Sequence[Row[Any]]], list[tuple[str, str]]]


class G2pStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    async def find_message(self, sender_id: str, message_id: str) -> MessageRecord | None:
        query = select(g2p_messages).where(
            g2p_messages.c.sender_id == sender_id, g2p_messages.c.message_id == message_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return MessageRecord.from_row(row) if row else None

    async def insert_message(
        self, values: dict[str, Any], callbacks: Sequence[tuple[str, str]] = ()
    ) -> MessageRecord:
        """Stores a message (and callbacks it already decided) at once. If the same sender and message_id
        were stored meanwhile, that record is returned and nothing is written."""
        now = utcnow()
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(insert(g2p_messages).values(create_time=now, **values))
                pk = int(result.inserted_primary_key[0])  # type: ignore[index]
                await _add_callbacks(conn, pk, callbacks, now)
        except IntegrityError:
            pass
        found = await self.find_message(values["sender_id"], values["message_id"])
        assert found is not None
        return found

    async def insert_callbacks(self, message_pk: int, callbacks: Sequence[tuple[str, str]]) -> None:
        async with self.engine.begin() as conn:
            await _add_callbacks(conn, message_pk, callbacks, utcnow())

    async def disburse_messages(
        self, sender_id: str, *, transaction_id: str = "", correlation_id: str = ""
    ) -> list[MessageRecord]:
        """The sender's disburse messages that made a batch, by transaction_id or correlation_id."""
        query = select(g2p_messages).where(
            g2p_messages.c.sender_id == sender_id,
            g2p_messages.c.action == "disburse",
            g2p_messages.c.batch_id.is_not(None),
        )
        if transaction_id:
            query = query.where(g2p_messages.c.transaction_id == transaction_id)
        if correlation_id:
            query = query.where(g2p_messages.c.correlation_id == correlation_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(g2p_messages.c.id))).all()
        return [MessageRecord.from_row(r) for r in rows]

    async def sender_batch_ids(self, sender_id: str) -> list[int]:
        query = (
            select(g2p_messages.c.batch_id)
            .where(g2p_messages.c.sender_id == sender_id, g2p_messages.c.batch_id.is_not(None))
            .distinct()
        )
        async with self.engine.connect() as conn:
            return [int(b) for (b,) in (await conn.execute(query)).all()]

    async def payments(
        self,
        batch_ids: Sequence[int],
        *,
        reference_ids: Sequence[str] = (),
        column: str = "",
        value: str = "",
        limit: int = 10_001,
        programs: frozenset[str] | None = None,
    ) -> list[Row[Any]]:
        """Payments of these batches, of the `programs` (None: every program) the caller may read."""
        if not batch_ids or (programs is not None and not programs):
            return []
        query = select(payments).where(payments.c.batch_id.in_(list(batch_ids)))
        if programs is not None:
            readable = select(batches.c.id).where(
                batches.c.id.in_(list(batch_ids)), batches.c.program.in_(sorted(programs))
            )
            query = query.where(payments.c.batch_id.in_(readable.scalar_subquery()))
        if reference_ids:
            query = query.where(payments.c.reference_id.in_(list(reference_ids)))
        if column:
            query = query.where(payments.c[column] == value)
        query = query.order_by(payments.c.batch_id, payments.c.number).limit(limit)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    # ---- final-status reports ------------------------------------------------------------------

    async def report_final(self, build: ReportBuilder, batch_size: int) -> int:
        """Turns newly final payments of every unreported message into callbacks, recording which status
        of which payment was reported in the same transaction. Returns the callbacks written."""
        query = select(g2p_messages).where(
            g2p_messages.c.reported.is_(False), g2p_messages.c.batch_id.is_not(None)
        )
        async with self.engine.connect() as conn:
            messages = [MessageRecord.from_row(r) for r in (await conn.execute(query.limit(100))).all()]
        written = 0
        for message in messages:
            written += await self._report_message(message, build, batch_size)
        return written

    async def _report_message(self, message: MessageRecord, build: ReportBuilder, batch_size: int) -> int:
        assert message.batch_id is not None
        batch_id = message.batch_id
        reported = exists().where(
            g2p_reported.c.batch_id == payments.c.batch_id,
            g2p_reported.c.number == payments.c.number,
            g2p_reported.c.status == payments.c.status,
        )
        fresh = (
            select(payments)
            .where(payments.c.batch_id == batch_id, payments.c.status.in_(FINAL_VALUES), ~reported)
            .order_by(payments.c.number)
            .limit(batch_size * 20)
        )
        now = utcnow()
        async with self.engine.begin() as conn:
            batch = (await conn.execute(select(batches.c.state).where(batches.c.id == batch_id))).one()
            rows = list((await conn.execute(fresh)).all())
            written = 0
            if rows and message.sender_uri:
                for start in range(0, len(rows), batch_size):
                    part = rows[start : start + batch_size]
                    await _add_callbacks(conn, message.id, build(message, part), now)
                    written += 1
            if rows:
                async with cached_plans(conn):  # a foreign key check per reported payment
                    await conn.execute(
                        insert(g2p_reported),
                        [{"batch_id": batch_id, "number": r.number, "status": r.status} for r in rows],
                    )
            pending = (
                await conn.execute(
                    select(
                        exists().where(
                            and_(payments.c.batch_id == batch_id, payments.c.status.in_(PENDING_VALUES))
                        )
                    )
                )
            ).scalar()
            done_uploading = batch.state in (BatchState.COMPLETED.value, BatchState.CANCELLED.value)
            if done_uploading and not pending and len(rows) < batch_size * 20:
                await conn.execute(
                    update(g2p_messages).where(g2p_messages.c.id == message.id).values(reported=True)
                )
        return written

    # ---- delivery ------------------------------------------------------------------------------

    async def due_callbacks(self, limit: int) -> list[Callback]:
        query = (
            select(g2p_callbacks)
            .where(
                g2p_callbacks.c.sent_time.is_(None),
                g2p_callbacks.c.abandoned.is_(False),
                g2p_callbacks.c.next_attempt_time <= utcnow(),
            )
            .order_by(g2p_callbacks.c.next_attempt_time, g2p_callbacks.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [Callback(r.id, r.message_id, r.uri, r.body, r.attempts) for r in rows]

    async def callback_sent(self, callback_id: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(g2p_callbacks)
                .where(g2p_callbacks.c.id == callback_id)
                .values(sent_time=utcnow(), attempts=g2p_callbacks.c.attempts + 1, last_error="")
            )

    async def callback_failed(self, callback_id: int, error: str, retry_at: dt.datetime | None) -> None:
        """Records a failed attempt; retry_at None abandons the callback (kept, with its last error)."""
        values: dict[str, Any] = {"attempts": g2p_callbacks.c.attempts + 1, "last_error": error[:500]}
        if retry_at is None:
            values["abandoned"] = True
        else:
            values["next_attempt_time"] = retry_at
        async with self.engine.begin() as conn:
            await conn.execute(
                update(g2p_callbacks).where(g2p_callbacks.c.id == callback_id).values(**values)
            )


async def _add_callbacks(
    conn: Any, message_pk: int, callbacks: Sequence[tuple[str, str]], now: dt.datetime
) -> None:
    if callbacks:
        await conn.execute(
            insert(g2p_callbacks),
            [
                {
                    "message_id": message_pk,
                    "uri": uri,
                    "body": body,
                    "next_attempt_time": now,
                    "create_time": now,
                }
                for uri, body in callbacks
            ],
        )
