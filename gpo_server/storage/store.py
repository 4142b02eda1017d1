"""The Store: every read and write GPO makes, one method per use, each a few statements at most.

Hot paths work on whole chunks: intake inserts a chunk with COPY (PostgreSQL) or one executemany
(SQLite); claims and results are one UPDATE per chunk. Nothing costs a round trip per payment.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Row, and_, event, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gpo_server.domain.states import FINAL, BatchState, PaymentStatus, sources_of
from gpo_server.storage.tables import batches, outbox, payments

S = PaymentStatus
PENDING = tuple(s.value for s in PaymentStatus if s not in FINAL)
MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    uid: str
    program: str
    request_id: str
    state: BatchState
    payer_fa: str
    callback_uri: str
    schedule_time: dt.datetime | None
    expected_payment_count: int
    expected_total_hundredths: int | None
    payment_count: int
    received_total_hundredths: int
    last_chunk_sequence: int
    create_time: dt.datetime
    update_time: dt.datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> BatchRecord:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)} | {"state": BatchState(m["state"])})

    @property
    def upload_matches_declaration(self) -> bool:
        """True when the client declared nothing, or what arrived matches what it declared."""
        if self.expected_payment_count and self.payment_count != self.expected_payment_count:
            return False
        total = self.expected_total_hundredths
        return total is None or total == self.received_total_hundredths


@dataclass(frozen=True, slots=True)
class NewBatch:
    program: str
    request_id: str
    payer_fa: str
    callback_uri: str
    schedule_time: dt.datetime | None
    expected_payment_count: int
    expected_total_hundredths: int | None


@dataclass(slots=True)
class NewPayment:
    """A payment row as intake writes it. Field order is the COPY column order."""

    number: int
    reference_id: str
    idempotency_key: str
    payer_fa: str
    payee_fa: str
    amount_hundredths: int | None
    currency_code: str
    payee_name: str
    note: str
    purpose: str
    schedule_time: dt.datetime | None
    metadata_json: str | None
    rail: str | None
    status: str
    reason_code: str
    reason_message: str


PAYMENT_COLUMNS = [f.name for f in fields(NewPayment)]


@dataclass(frozen=True, slots=True)
class NewWorkChunk:
    chunk_id: str
    rail: str
    payload: bytes
    not_before: dt.datetime | None


@dataclass(frozen=True, slots=True)
class PublishableChunk:
    id: int
    batch_id: int
    chunk_id: str
    rail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class StatusTotal:
    status: PaymentStatus
    currency_code: str
    count: int
    amount_hundredths: int


@dataclass(frozen=True, slots=True)
class ResultUpdate:
    number: int
    status: PaymentStatus  # SUCCEEDED or FAILED
    reason_code: str
    reason_message: str
    rail_reference: str


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10) -> Store:
        if url.startswith("sqlite"):
            engine = create_async_engine(url, connect_args={"timeout": 60})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        return cls(engine)

    async def migrate(self) -> None:
        """Brings the schema to the newest migration."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- batches -------------------------------------------------------------------------------

    async def create_or_get_batch(self, new: NewBatch) -> tuple[BatchRecord, bool]:
        """Returns (batch, created). The same program and request_id always give the same batch."""
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

    async def get_batch(self, uid: str) -> BatchRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(batches).where(batches.c.uid == uid))).first()
        return BatchRecord.from_row(row) if row else None

    async def list_batches(
        self, *, programs: Iterable[str] | None, program: str, after_id: int | None, limit: int
    ) -> list[BatchRecord]:
        """Newest first; `programs` None means every program, else only those."""
        query = select(batches).order_by(batches.c.id.desc()).limit(limit)
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
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [StatusTotal(PaymentStatus(s), c, int(n), int(a)) for s, c, n, a in rows]

    # ---- intake --------------------------------------------------------------------------------

    @asynccontextmanager
    async def chunk_transaction(self, batch_id: int) -> AsyncIterator[ChunkTransaction]:
        """One intake chunk, all or nothing, with the batch row locked against a concurrent upload."""
        async with self.engine.begin() as conn:
            query = select(batches).where(batches.c.id == batch_id)
            if self.is_postgres:
                query = query.with_for_update()
            else:
                # SQLite takes its single writer lock at the first write; take it now so the read below
                # cannot go stale under a concurrent upload of the same batch.
                await conn.execute(
                    text("UPDATE batches SET update_time = update_time WHERE id = :id"), {"id": batch_id}
                )
            row = (await conn.execute(query)).one()
            yield ChunkTransaction(conn, BatchRecord.from_row(row), self.is_postgres)

    async def finish_upload(self, batch_id: int) -> BatchRecord:
        """Ends the upload if what arrived matches what was declared; the batch then starts dispatching."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()
            batch = BatchRecord.from_row(row)
            if batch.state is BatchState.UPLOADING and batch.upload_matches_declaration:
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.state == BatchState.UPLOADING.value)
                    .values(state=BatchState.PROCESSING.value, update_time=utcnow())
                )
                await _complete_if_final(conn, batch_id)
        found = await self.get_batch(batch.uid)
        assert found is not None
        return found

    # ---- dispatch ------------------------------------------------------------------------------

    async def publishable_chunks(self, limit: int) -> list[PublishableChunk]:
        """Unpublished work of batches whose upload is complete and whose time has come, oldest first."""
        now = utcnow()
        query = (
            select(outbox.c.id, outbox.c.batch_id, outbox.c.chunk_id, outbox.c.rail, outbox.c.payload)
            .join(batches, batches.c.id == outbox.c.batch_id)
            .where(
                outbox.c.publish_time.is_(None),
                batches.c.state == BatchState.PROCESSING.value,
                (batches.c.schedule_time.is_(None)) | (batches.c.schedule_time <= now),
                (outbox.c.not_before.is_(None)) | (outbox.c.not_before <= now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [PublishableChunk(*row) for row in rows]

    async def mark_published(self, published: Sequence[tuple[PublishableChunk, Sequence[int]]]) -> None:
        """After the broker confirmed these chunks: record it and move their payments to QUEUED."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(outbox).where(outbox.c.id.in_([c.id for c, _ in published])).values(publish_time=now)
            )
            for chunk, numbers in published:
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == chunk.batch_id,
                        payments.c.number.in_(numbers),
                        payments.c.status.in_([s.value for s in sources_of(S.QUEUED)]),
                    )
                    .values(status=S.QUEUED.value, update_time=now)
                )

    async def claim(self, batch_id: int, numbers: Sequence[int]) -> tuple[set[int], dict[int, PaymentStatus]]:
        """Moves the chunk's unclaimed payments to SENT. Returns (newly sent, status of every other one)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(payments)
                .where(
                    payments.c.batch_id == batch_id,
                    payments.c.number.in_(numbers),
                    payments.c.status.in_([s.value for s in sources_of(S.SENT)]),
                )
                .values(status=S.SENT.value, attempts=payments.c.attempts + 1, update_time=now)
                .returning(payments.c.number)
            )
            sent = {int(n) for (n,) in result}
            rest = [n for n in numbers if n not in sent]
            others: dict[int, PaymentStatus] = {}
            if rest:
                rows = await conn.execute(
                    select(payments.c.number, payments.c.status).where(
                        payments.c.batch_id == batch_id, payments.c.number.in_(rest)
                    )
                )
                others = {int(n): PaymentStatus(s) for n, s in rows}
        return sent, others

    async def apply_results(self, batch_id: int, results: Sequence[ResultUpdate]) -> int:
        """Records rail outcomes of SENT payments; repeats change nothing. Returns how many changed."""
        if not results:
            return 0
        now = utcnow()
        async with self.engine.begin() as conn:
            if self.is_postgres:
                changed = await conn.execute(
                    text(
                        "UPDATE payments AS p SET status = v.status, reason_code = v.reason_code,"
                        " reason_message = v.reason_message, rail_reference = v.rail_reference,"
                        " update_time = :now"
                        " FROM unnest(CAST(:numbers AS bigint[]), CAST(:statuses AS text[]),"
                        " CAST(:codes AS text[]), CAST(:messages AS text[]), CAST(:refs AS text[]))"
                        " AS v(number, status, reason_code, reason_message, rail_reference)"
                        " WHERE p.batch_id = :batch_id AND p.number = v.number AND p.status = 'sent'"
                        " RETURNING p.number"
                    ),
                    {
                        "now": now,
                        "batch_id": batch_id,
                        "numbers": [r.number for r in results],
                        "statuses": [r.status.value for r in results],
                        "codes": [r.reason_code for r in results],
                        "messages": [r.reason_message for r in results],
                        "refs": [r.rail_reference for r in results],
                    },
                )
                count = len(changed.all())
            else:
                changed = await conn.execute(
                    text(
                        "UPDATE payments SET status = :status, reason_code = :code, reason_message = :message,"
                        " rail_reference = :ref, update_time = :now"
                        " WHERE batch_id = :batch_id AND number = :number AND status = 'sent'"
                    ),
                    [
                        {
                            "status": r.status.value,
                            "code": r.reason_code,
                            "message": r.reason_message,
                            "ref": r.rail_reference,
                            "now": now,
                            "batch_id": batch_id,
                            "number": r.number,
                        }
                        for r in results
                    ],
                )
                count = max(changed.rowcount, 0)
            await _complete_if_final(conn, batch_id)
        return count

    async def cancel_batch(self, batch_id: int) -> None:
        """Payments no rail has claimed become CANCELLED; claimed ones finish on their rail."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(payments)
                .where(
                    payments.c.batch_id == batch_id,
                    payments.c.status.in_([s.value for s in sources_of(S.CANCELLED)]),
                )
                .values(
                    status=S.CANCELLED.value,
                    reason_code="rjct.batch.cancelled",
                    reason_message="batch cancelled",
                    update_time=now,
                )
            )
            # Unpublished work is dropped: its payments are all cancelled now.
            await conn.execute(
                update(outbox)
                .where(outbox.c.batch_id == batch_id, outbox.c.publish_time.is_(None))
                .values(publish_time=now)
            )
            await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.state.in_([BatchState.UPLOADING.value, BatchState.PROCESSING.value]),
                )
                .values(state=BatchState.CANCELLED.value, update_time=now)
            )

    # ---- reads ---------------------------------------------------------------------------------

    async def list_payments(
        self, batch_id: int, *, statuses: Iterable[PaymentStatus], after_number: int, limit: int
    ) -> list[Row[Any]]:
        query = (
            select(payments)
            .where(payments.c.batch_id == batch_id, payments.c.number > after_number)
            .order_by(payments.c.number)
            .limit(limit)
        )
        wanted = [s.value for s in statuses]
        if wanted:
            query = query.where(payments.c.status.in_(wanted))
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())


class ChunkTransaction:
    """What intake does inside one chunk's transaction."""

    def __init__(self, conn: AsyncConnection, batch: BatchRecord, is_postgres: bool) -> None:
        self.conn = conn
        self.batch = batch
        self.is_postgres = is_postgres

    async def existing_references(self, reference_ids: Sequence[str]) -> set[str]:
        """Which of these references earlier chunks of the batch already used."""
        found: set[str] = set()
        for start in range(0, len(reference_ids), 5000):
            part = reference_ids[start : start + 5000]
            rows = await self.conn.execute(
                select(payments.c.reference_id).where(
                    payments.c.batch_id == self.batch.id,
                    payments.c.reference_id.in_(part),
                    payments.c.status != S.REJECTED.value,
                )
            )
            found.update(r for (r,) in rows)
        return found

    async def write(
        self,
        sequence: int,
        rows: Sequence[NewPayment],
        work: Sequence[NewWorkChunk],
        received_total_hundredths: int,
    ) -> None:
        now = utcnow()
        if rows:
            if self.is_postgres:
                raw = await self.conn.get_raw_connection()
                await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                    "payments",
                    records=[(self.batch.id, *astuple(r), now) for r in rows],
                    columns=["batch_id", *PAYMENT_COLUMNS, "update_time"],
                )
            else:
                await self.conn.execute(
                    insert(payments),
                    [{"batch_id": self.batch.id, "update_time": now, **_as_dict(r)} for r in rows],
                )
        if work:
            await self.conn.execute(
                insert(outbox),
                [
                    {
                        "batch_id": self.batch.id,
                        "chunk_id": w.chunk_id,
                        "rail": w.rail,
                        "payload": w.payload,
                        "not_before": w.not_before,
                        "create_time": now,
                    }
                    for w in work
                ],
            )
        await self.conn.execute(
            update(batches)
            .where(batches.c.id == self.batch.id)
            .values(
                payment_count=batches.c.payment_count + len(rows),
                received_total_hundredths=batches.c.received_total_hundredths + received_total_hundredths,
                last_chunk_sequence=sequence,
                update_time=now,
            )
        )


def _as_dict(row: NewPayment) -> dict[str, Any]:
    return {name: getattr(row, name) for name in PAYMENT_COLUMNS}


async def _complete_if_final(conn: AsyncConnection, batch_id: int) -> None:
    pending = (
        select(payments.c.number)
        .where(and_(payments.c.batch_id == batch_id, payments.c.status.in_(PENDING)))
        .exists()
    )
    await conn.execute(
        update(batches)
        .where(batches.c.id == batch_id, batches.c.state == BatchState.PROCESSING.value, ~pending)
        .values(state=BatchState.COMPLETED.value, update_time=utcnow())
    )


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (watch, list) run beside the writer; FULL makes each commit durable on return.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
