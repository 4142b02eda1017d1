"""The Store: every read and write GPO makes, one method per use, each a few statements at most.

Hot paths work on whole chunks: intake inserts a chunk with COPY (PostgreSQL) or one executemany
(SQLite); claims and results are one UPDATE per chunk. Nothing costs a round trip per payment.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Row,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    case,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gpo_server.domain.filters import Filter
from gpo_server.domain.states import (
    FINAL,
    REDRIVABLE,
    BatchState,
    ClaimAction,
    PaymentStatus,
    claim_action,
    operator_sources_of,
    sources_of,
)
from gpo_server.storage import audit as audit_trail
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.tables import (
    audit_events,
    batch_operations,
    batches,
    dead_letters,
    outbox,
    payment_status_changes,
    payments,
)

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
    unfinished_count: int = 0

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


class NewPayment(NamedTuple):
    """A payment row as intake writes it. A tuple, in COPY column order, so COPY takes it as it is."""

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


PAYMENT_COLUMNS = list(NewPayment._fields)


@dataclass(frozen=True, slots=True)
class NewWorkChunk:
    chunk_id: str
    rail: str
    payload: bytes
    not_before: dt.datetime | None
    trace_context: str | None = None  # the producing upload's traceparent, when tracing is on


@dataclass(frozen=True, slots=True)
class DeadLetterOutcome:
    redriven: int  # payments sent again in new work, with their keys
    exhausted: int  # payments left for an operator: re-driven the maximum number of times already


@dataclass(frozen=True, slots=True)
class PublishableChunk:
    id: int
    batch_id: int
    chunk_id: str
    rail: str
    payload: bytes
    trace_context: str | None = None


@dataclass(frozen=True, slots=True)
class StatusTotal:
    status: PaymentStatus
    currency_code: str
    count: int
    amount_hundredths: int


@dataclass(frozen=True, slots=True)
class ResultUpdate:
    number: int
    status: PaymentStatus  # SUCCEEDED, FAILED or REVERSED
    reason_code: str
    reason_message: str
    rail_reference: str
    failure_definite: bool | None = None  # FAILED only: False when the rail was unreachable
    rail_executions: int = 0  # how many times the rail executed the key, when its look-up tells (0: unknown)


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    execute: set[int]
    verify: set[int]
    busy: set[int]
    lease_expire_time: dt.datetime
    retry_after: dt.timedelta
    lease_token: int = 0


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """What a work item needs of a stored payment."""

    number: int
    idempotency_key: str
    reference_id: str
    payer_fa: str
    payee_fa: str
    amount_hundredths: int
    currency_code: str
    payee_name: str
    note: str
    purpose: str
    rail: str

    @classmethod
    def from_row(cls, row: Row[Any], key: str | None = None) -> PaymentRow:
        m = row._mapping
        values = {f.name: m[f.name] for f in fields(cls)}
        if key is not None:
            values["idempotency_key"] = key
        return cls(**values)


# Builds the outbox work for (batch uid, payments, verify_only); supplied by gpo_server.work.
WorkBuilder = Callable[[str, Sequence[PaymentRow], bool], list["NewWorkChunk"]]
PublishDone = Callable[[Sequence[tuple["PublishableChunk", Sequence[int]]]], Awaitable[None]]

STUCK_UNANSWERED = (
    "stuck: SENT past the stuck-payment timeout and the rail has not answered repeated look-ups"
)
PAID_TWICE = "paid more than once: the rail executed this key {executions} times"
REDRIVES_EXHAUSTED = (
    "work chunk {chunk_id} was dead-lettered ({reason}) after this payment had been sent again {redrives}"
    " times: no longer sent by itself. Never claimed, so never paid. Find the cause under chunk {chunk_id}"
    " in rail {rail}'s sidecar log and its dead letters (gpo dead-letters); CancelBatch cancels it"
)
STUCK_UNKNOWN = "stuck: the rail has no record of this payment; it may never have been executed"
WORK_SLICE = 1000


# The partial unique index on (batch_id, reference_id) of accepted payments (tables.py).
REFERENCE_INDEX = "uq_payments_batch_reference"


# A batch at least this large refreshes the payments table's planner statistics when its upload ends.
ANALYZE_AFTER = 20_000


class ReferenceTaken(Exception):
    """A chunk's payment uses a reference_id the batch already holds (its unique index refused it)."""


class NothingToDo(Exception):
    """An operator's action on one payment whose status gives it nothing to do; nothing was recorded."""


class ForeignRail(Exception):
    """A claim named payments routed to a rail the claiming sidecar does not serve; nothing was claimed."""

    def __init__(self, numbers: Sequence[int]) -> None:
        super().__init__(f"{len(numbers)} payments belong to another rail, e.g. {sorted(numbers)[:5]}")
        self.numbers = list(numbers)


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


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10) -> Store:
        if url.startswith("sqlite"):
            if (database := make_url(url).database) and database != ":memory:":
                _create_private(Path(database))
            engine = create_async_engine(url, connect_args={"timeout": 60})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                # asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic
                # plan that ignores the array's size. For `batch_id = $1 AND number = ANY($2)` that plan
                # scanned the whole batch per chunk (quadratic in the batch size), so plans stay custom.
                connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
            )
        return cls(engine)

    async def migrate(self) -> None:
        """Brings the schema to the newest migration."""
        async with self.engine.begin() as conn:
            if self.is_postgres:
                # Replicas starting together on an empty database take turns; the second finds it done.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7350001)"))
            await conn.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- batches -------------------------------------------------------------------------------

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

    # ---- audit trail ---------------------------------------------------------------------------

    async def _audit(self, conn: AsyncConnection, event: AuditEvent) -> None:
        """Appends to the audit trail inside `conn`'s transaction: the last statement before its commit."""
        await audit_trail.append(conn, event, is_postgres=self.is_postgres)

    async def record_audit(self, event: AuditEvent) -> None:
        """An audit event of its own, for changes made outside the store's transactions."""
        async with self.engine.begin() as conn:
            await self._audit(conn, event)

    async def list_audit(self, *, batch_uid: str, after_id: int, limit: int) -> list[Row[Any]]:
        query = select(audit_events).where(audit_events.c.id > after_id)
        if batch_uid:
            query = query.where(audit_events.c.batch_uid == batch_uid)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query.order_by(audit_events.c.id).limit(limit))).all())

    async def verify_audit(self, slice_size: int = 10_000) -> audit_trail.ChainCheck:
        """Recomputes the whole trail's hash chain, a slice at a time."""
        checked, after, previous = 0, 0, audit_trail.GENESIS
        async with self.engine.connect() as conn:
            while rows := (
                await conn.execute(
                    select(audit_events)
                    .where(audit_events.c.id > after)
                    .order_by(audit_events.c.id)
                    .limit(slice_size)
                )
            ).all():
                result = audit_trail.check(list(rows), previous)
                if result.first_broken_id:
                    return replace(result, checked=checked + result.checked)
                checked += result.checked
                after, previous = int(rows[-1].id), rows[-1].hash
        return audit_trail.ChainCheck(checked)

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
                        _in(payments.c.reference_id, part, self.is_postgres, Text),
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

    # ---- intake --------------------------------------------------------------------------------

    @asynccontextmanager
    async def chunk_transaction(self, batch_id: int) -> AsyncIterator[ChunkTransaction]:
        """One intake chunk, all or nothing, with the batch row locked against a concurrent upload."""
        async with self.engine.begin() as conn:
            query = select(batches).where(batches.c.id == batch_id)
            if self.is_postgres:
                query = query.with_for_update()
            else:
                await _hold_sqlite_writer(conn, batch_id)
            row = (await conn.execute(query)).one()
            # Every statement of a chunk's transaction reads or writes by key: no plan depends on values.
            async with cached_plans(conn):
                yield ChunkTransaction(conn, BatchRecord.from_row(row), self.is_postgres)

    async def finish_upload(self, batch_id: int, audit: AuditEvent | None = None) -> BatchRecord:
        """Ends the upload if what arrived matches what was declared; the batch then starts dispatching.
        An upload with no payments stays open, so the same request_id can still send them. `audit` is
        recorded when the upload ends here."""
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()
            batch = BatchRecord.from_row(row)
            if (
                batch.state is BatchState.UPLOADING
                and batch.payment_count > 0
                and batch.upload_matches_declaration
            ):
                await conn.execute(
                    update(batches)
                    .where(batches.c.id == batch_id, batches.c.state == BatchState.UPLOADING.value)
                    .values(state=BatchState.PROCESSING.value, update_time=utcnow())
                )
                await _count_unfinished(conn, batch_id)
                if audit is not None:
                    await self._audit(
                        conn, replace(audit, batch_uid=batch.uid, payment_count=batch.payment_count)
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

    # ---- dispatch ------------------------------------------------------------------------------

    @asynccontextmanager
    async def publishing(self, limit: int) -> AsyncIterator[tuple[list[PublishableChunk], PublishDone]]:
        """Unpublished work of batches whose upload is complete and whose time has come, oldest first,
        locked for this relay (other replicas skip it) until the caller marks it published."""
        now = utcnow()
        query = (
            select(
                outbox.c.id,
                outbox.c.batch_id,
                outbox.c.chunk_id,
                outbox.c.rail,
                outbox.c.payload,
                outbox.c.trace_context,
            )
            .join(batches, batches.c.id == outbox.c.batch_id)
            .where(
                outbox.c.publish_time.is_(None),
                # CANCELLED too: sweeps of its in-flight payments must still reach the rail.
                batches.c.state.in_([BatchState.PROCESSING.value, BatchState.CANCELLED.value]),
                (batches.c.schedule_time.is_(None)) | (batches.c.schedule_time <= now),
                (outbox.c.not_before.is_(None)) | (outbox.c.not_before <= now),
            )
            .order_by(outbox.c.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(of=outbox, skip_locked=True)
        async with self.engine.begin() as conn:
            chunks = [PublishableChunk(*row) for row in await conn.execute(query)]

            async def done(published: Sequence[tuple[PublishableChunk, Sequence[int]]]) -> None:
                await _mark_published(conn, published)

            yield chunks, done

    async def claim(
        self,
        batch_id: int,
        numbers: Sequence[int],
        owner: str,
        lease_s: float,
        max_call_s: float = 0.0,
        *,
        rails: frozenset[str] | None = None,
        not_before: dt.datetime | None = None,
    ) -> ClaimOutcome:
        """Leases the chunk's payments to one claim, with a new fencing token. Unclaimed ones move to SENT
        (execute); SENT ones whose holder can no longer be executing them are re-leased (verify): the
        holder's lease ended and its in-flight window (lease plus the rail's longest call, `max_call_s`
        of the claim that set it) closed, or the holder is this same owner; the rest are busy.

        Payments scheduled later (their own schedule_time, or the batch's `not_before`) are busy until
        then. A payment of a rail outside `rails` (None: every rail) claims nothing: ForeignRail."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=lease_s)
        in_flight_until = expires + dt.timedelta(seconds=max_call_s)
        token = secrets.randbits(62) + 1
        verify: set[int] = set()
        execute: set[int] = set()
        busy: set[int] = set()
        busy_until = now
        async with self.engine.begin() as conn:
            # Lock the chunk's rows and read them, decide here, then update the chosen ones: two plain
            # primary-key statements. A single PostgreSQL statement that joined the locked rows back to the
            # table ran, for a batch the statistics did not know yet, as a nested loop over the two (a
            # million comparisons per 1,000-payment chunk).
            if not self.is_postgres:
                await _hold_sqlite_writer(conn, batch_id)
            mine = (
                payments.c.batch_id == batch_id,
                _in(payments.c.number, numbers, self.is_postgres, BigInteger),
            )
            current = (
                await conn.execute(
                    _locked(
                        select(
                            payments.c.number,
                            payments.c.status,
                            payments.c.lease_owner,
                            payments.c.lease_expire_time,
                            payments.c.in_flight_until,
                            payments.c.rail,
                            payments.c.schedule_time,
                        )
                        .where(*mine)
                        .order_by(payments.c.number),
                        self.is_postgres,
                    )
                )
            ).all()
            if rails is not None and (foreign := [int(row[0]) for row in current if row[5] not in rails]):
                raise ForeignRail(foreign)  # the transaction rolls back: not even the locks stay
            for number, status, lease_owner, lease_expire_time, flight_end, _, scheduled in current:
                due = max((t for t in (_aware(scheduled), _aware(not_before)) if t is not None), default=None)
                if due is not None and due > now and S(status) is not S.SENT:
                    busy.add(int(number))  # not to be paid before its time, whoever asks
                    busy_until = max(busy_until, due)
                    continue
                free_at = _free_at(lease_expire_time, flight_end)
                action = claim_action(
                    S(status),
                    held_by_caller=lease_owner == owner,
                    holder_in_flight=free_at is not None and free_at >= now,
                )
                if action is ClaimAction.EXECUTE:
                    execute.add(int(number))
                elif action is ClaimAction.VERIFY:
                    verify.add(int(number))
                elif action is ClaimAction.BUSY:
                    busy.add(int(number))
                    busy_until = max(busy_until, free_at or now)
            if execute or verify:
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        _in(payments.c.number, sorted(execute | verify), self.is_postgres, BigInteger),
                    )
                    .values(
                        status=S.SENT.value,
                        attempts=payments.c.attempts + 1,
                        lease_owner=owner,
                        lease_token=token,
                        lease_expire_time=expires,
                        in_flight_until=in_flight_until,
                        update_time=now,
                    )
                )
        return ClaimOutcome(execute, verify, busy, expires, busy_until - now, token)

    async def renew(
        self, batch_id: int, numbers: Sequence[int], owner: str, token: int, lease_s: float
    ) -> dt.datetime | None:
        """Extends a claim's lease (a heartbeat) if the claim still holds every listed payment; the
        in-flight window moves with it by the same margin. None, changing nothing, when it does not."""
        now = utcnow()
        expires = now + dt.timedelta(seconds=lease_s)
        async with self.engine.begin() as conn:
            if not self.is_postgres:
                await _hold_sqlite_writer(conn, batch_id)
            held = (
                payments.c.batch_id == batch_id,
                _in(payments.c.number, numbers, self.is_postgres, BigInteger),
                payments.c.status == S.SENT.value,
                payments.c.lease_owner == owner,
                payments.c.lease_token == token,
            )
            rows = (
                await conn.execute(
                    _locked(
                        select(payments.c.lease_expire_time, payments.c.in_flight_until).where(*held),
                        self.is_postgres,
                    )
                )
            ).all()
            if len(rows) != len(set(numbers)):
                return None
            # One claim set every row's lease and window together: the margin is the rail's longest call.
            margin = max(
                ((_aware(r[1]) or now) - (_aware(r[0]) or now) for r in rows), default=dt.timedelta(0)
            )
            await conn.execute(
                update(payments)
                .where(*held)
                .values(lease_expire_time=expires, in_flight_until=expires + margin)
            )
        return expires

    async def apply_results(
        self,
        batch_id: int,
        results: Sequence[ResultUpdate],
        *,
        owner: str = "",
        token: int = 0,
        released: Sequence[int] = (),
        unknown: Sequence[int] = (),
        max_sweeps: int = 3,
        redispatch: WorkBuilder | None = None,
        refused: list[int] | None = None,
        rails: frozenset[str] | None = None,
        audit: AuditEvent | None = None,
    ) -> int:
        """Records rail outcomes; repeats change nothing. Returns how many payments changed.

        SUCCEEDED/FAILED apply to SENT payments, and only from the claim that holds them: its fencing
        `token` (or `owner` when the token is 0) is still the payment's, whether or not its lease ran out;
        once another claim took the payment, that claim's look-up on the rail decides. REVERSED applies to
        SUCCEEDED payments (and proves a SENT one paid) outside any claim. Nothing applies to a payment of
        a rail outside `rails` (None: every rail). What only the holder can know applies only while the
        claim holds the payment: an UNREACHABLE failure (the rail does not know the key, so nobody else
        may be executing it), `released` and `unknown`, which end the lease.
        `unknown` (a verify-only look-up found no record) re-dispatches the payments with their keys when
        `redispatch` builds the work, else tells an operator once the sweeps are exhausted. Refused
        payments still SENT are appended to `refused`."""
        now = utcnow()
        count = 0
        holder = (payments.c.lease_token == token) if token else (payments.c.lease_owner == owner)
        async with self.engine.begin() as conn:
            reversals = [r for r in results if r.status is S.REVERSED]
            if reversals:
                # A return proves the payment was paid: one still SENT (its success never reached GPO)
                # becomes SUCCEEDED first, then REVERSED, in this same transaction.
                paid = [
                    ResultUpdate(r.number, S.SUCCEEDED, "", "", r.rail_reference, True) for r in reversals
                ]
                settled = await self._apply(conn, batch_id, S.SENT, paid, now, rails=rails)
            else:
                settled = 0
            claimed = bool(token or owner)
            for source, group in _by_source(results).items():
                if source is S.SENT and not claimed:
                    continue  # an outcome for a SENT payment without the claim that holds it: refused
                changed = await self._apply(
                    conn,
                    batch_id,
                    source,
                    group,
                    now,
                    token=token if source is S.SENT else None,
                    owner=owner,
                    rails=rails,
                )
                count += changed
                if source is S.SENT:
                    settled += changed
            fenced = [*(r.number for r in results if r.status is not S.REVERSED), *released, *unknown]
            if fenced and refused is not None:
                # What the holder-only statements could not touch: SENT payments this claim no longer holds.
                refused.extend(
                    int(n)
                    for n in (
                        await conn.execute(
                            select(payments.c.number).where(
                                payments.c.batch_id == batch_id,
                                payments.c.status == S.SENT.value,
                                payments.c.number.in_(fenced),
                                ~holder,
                            )
                        )
                    ).scalars()
                )
            if released or unknown:
                owned = (payments.c.batch_id == batch_id, payments.c.status == S.SENT.value, holder)
                if unknown and redispatch is not None:
                    # The rail has no record and no holder can be executing them: send them again, each
                    # with its own key; the new chunk's claim verifies them and executes what is absent.
                    rows = (
                        await conn.execute(select(payments).where(*owned, payments.c.number.in_(unknown)))
                    ).all()
                    if rows:
                        uid = (
                            await conn.execute(select(batches.c.uid).where(batches.c.id == batch_id))
                        ).scalar_one()
                        await _insert_work(
                            conn,
                            batch_id,
                            redispatch(uid, [PaymentRow.from_row(r) for r in rows], False),
                            now,
                        )
                await conn.execute(
                    update(payments)
                    .where(*owned, payments.c.number.in_([*released, *unknown]))
                    .values(lease_owner="", lease_expire_time=None, in_flight_until=None)
                )
                if unknown and redispatch is None:
                    await conn.execute(
                        update(payments)
                        .where(
                            payments.c.batch_id == batch_id,
                            payments.c.status == S.SENT.value,
                            payments.c.number.in_(unknown),
                            payments.c.sweeps >= max_sweeps,
                        )
                        .values(attention_reason=STUCK_UNKNOWN)
                    )
            twice = [r for r in results if r.rail_executions > 1]
            for executions in sorted({r.rail_executions for r in twice}):
                # The rail says it executed the key more than once: nothing GPO stores may look clean.
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.number.in_([r.number for r in twice if r.rail_executions == executions]),
                    )
                    .values(attention_reason=PAID_TWICE.format(executions=executions))
                )
            await _count_unfinished(conn, batch_id, -settled)
            if audit is not None:
                reported = len(results) + len(released) + len(unknown)
                await self._audit(
                    conn, replace(audit, payment_count=reported, detail={**audit.detail, "applied": count})
                )
        return count

    async def _apply(
        self,
        conn: AsyncConnection,
        batch_id: int,
        source: PaymentStatus,
        group: Sequence[ResultUpdate],
        now: dt.datetime,
        *,
        token: int | None = None,
        owner: str = "",
        rails: frozenset[str] | None = None,
    ) -> int:
        """One UPDATE for a group of outcomes that all move payments out of `source`; with `token` set,
        only payments that claim holds (by its token, or by `owner` when the token is 0); with `rails`,
        only payments of those rails."""
        params: dict[str, Any] = {
            "now": now,
            "batch_id": batch_id,
            "source": source.value,
        }
        fence = ""
        if token:
            fence, params["token"] = " AND p.lease_token = :token", token
        elif token is not None:
            fence, params["owner"] = " AND p.lease_owner = :owner", owner
        if rails is not None:
            names = sorted(rails)
            fence += (
                f" AND p.rail IN ({', '.join(f':rail{i}' for i in range(len(names)))})"
                if names
                else " AND 0 = 1"
            )
            params.update({f"rail{i}": name for i, name in enumerate(names)})
        columns = (
            "status = v.status, reason_code = v.reason_code, reason_message = v.reason_message,"
            " rail_reference = CASE WHEN v.rail_reference = '' THEN p.rail_reference ELSE v.rail_reference END,"
            " failure_definite = v.definite, update_time = :now, lease_owner = '', lease_expire_time = NULL,"
            " in_flight_until = NULL, attention_reason = ''"
        )
        if self.is_postgres:
            changed = await conn.execute(
                text(
                    f"UPDATE payments AS p SET {columns}"
                    " FROM unnest(CAST(:numbers AS bigint[]), CAST(:statuses AS text[]),"
                    " CAST(:codes AS text[]), CAST(:messages AS text[]), CAST(:refs AS text[]),"
                    " CAST(:definite AS boolean[]))"
                    " AS v(number, status, reason_code, reason_message, rail_reference, definite)"
                    f" WHERE p.batch_id = :batch_id AND p.number = v.number AND p.status = :source{fence}"
                    " RETURNING p.number"
                ),
                {
                    **params,
                    "numbers": [r.number for r in group],
                    "statuses": [r.status.value for r in group],
                    "codes": [r.reason_code for r in group],
                    "messages": [r.reason_message for r in group],
                    "refs": [r.rail_reference for r in group],
                    "definite": [r.failure_definite for r in group],
                },
            )
            return len(changed.all())
        # SQLite: the same statement per payment through one executemany, in this one transaction.
        changed = await conn.execute(
            text(
                "UPDATE payments AS p SET"
                " status = :status, reason_code = :code, reason_message = :message,"
                " rail_reference = CASE WHEN :ref = '' THEN p.rail_reference ELSE :ref END,"
                " failure_definite = :definite, update_time = :now, lease_owner = '',"
                " lease_expire_time = NULL, in_flight_until = NULL, attention_reason = ''"
                f" WHERE batch_id = :batch_id AND number = :number AND status = :source{fence}"
            ),
            [
                {
                    **params,
                    "status": r.status.value,
                    "code": r.reason_code,
                    "message": r.reason_message,
                    "ref": r.rail_reference,
                    "definite": r.failure_definite,
                    "number": r.number,
                }
                for r in group
            ],
        )
        return max(changed.rowcount, 0)

    # ---- operators and the sweeper -----------------------------------------------------------------

    async def retry_failed(
        self,
        batch_id: int,
        request_id: str,
        build: WorkBuilder,
        audit: AuditEvent | None = None,
        *,
        numbers: Sequence[int] | None = None,
    ) -> int | None:
        """Sends the batch's FAILED payments (of `numbers` only, when given) again; None if this request_id
        already did; NothingToDo, changing nothing, when `numbers` holds no FAILED payment. A payment the rail refused for good gets a new idempotency key (the rail keeps
        refusing the old one); one that failed because the rail was unreachable keeps its key, which the
        rail may still hold."""
        now = utcnow()
        # One bound parameter per status, not an expanding IN, which executemany below cannot take.
        retryable = or_(*(payments.c.status == s.value for s in sorted(operator_sources_of(S.ACCEPTED))))
        chosen = payments.c.number.in_(list(numbers)) if numbers is not None else true()
        kind = "retry_failed" if numbers is None else "retry_payment"
        async with self.engine.begin() as conn:
            if not await _record_operation(conn, batch_id, request_id, kind, now):
                return None
            query = select(batches).where(batches.c.id == batch_id)
            batch = BatchRecord.from_row((await conn.execute(_locked(query, self.is_postgres))).one())
            total, after = 0, 0
            while rows := (
                await conn.execute(
                    select(payments)
                    .where(payments.c.batch_id == batch_id, retryable, chosen, payments.c.number > after)
                    .order_by(payments.c.number)
                    .limit(WORK_SLICE)
                )
            ).all():
                after = int(rows[-1].number)
                retried = [
                    PaymentRow.from_row(
                        r,
                        key=r.idempotency_key
                        if r.failure_definite is False
                        else str(uuid.uuid5(uuid.UUID(batch.uid), f"{r.reference_id}#retry{r.retries + 1}")),
                    )
                    for r in rows
                ]
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.number == bindparam("b_number"),
                        retryable,
                    )
                    .values(
                        status=S.ACCEPTED.value,
                        idempotency_key=bindparam("b_key"),
                        retries=payments.c.retries + 1,
                        reason_code="",
                        reason_message="",
                        failure_definite=None,
                        attention_reason="",
                        update_time=now,
                    ),
                    [{"b_number": p.number, "b_key": p.idempotency_key} for p in retried],
                )
                await _insert_work(conn, batch_id, build(batch.uid, retried, False), now)
                total += len(rows)
            if numbers is not None and not total:
                raise NothingToDo("not FAILED")  # rolls back: the request id stays free
            if total:
                await _count_unfinished(conn, batch_id, total)
            if audit is not None:
                await self._audit(conn, replace(audit, batch_uid=batch.uid, payment_count=total))
        return total

    async def sweep_stuck(
        self, older_than_s: float, max_sweeps: int, build: WorkBuilder, limit: int = 5000
    ) -> int:
        """Finds SENT payments nobody holds that have waited longer than older_than_s, and queues a
        verify-only chunk for them: their sidecar asks the rail and reports what it knows. After
        max_sweeps unanswered sweeps a payment is marked for an operator's attention."""
        now = utcnow()
        cutoff = now - dt.timedelta(seconds=older_than_s)
        # Only batches in progress can hold SENT payments; reading just those keeps the sweep's cost to the
        # work in flight, however much history the table holds (no index on status: see tables.py).
        in_progress = select(batches.c.id).where(
            batches.c.state.in_([BatchState.PROCESSING.value, BatchState.CANCELLED.value])
        )
        query = (
            select(payments)
            .where(
                payments.c.batch_id.in_(in_progress),
                payments.c.status == S.SENT.value,
                payments.c.update_time < cutoff,
                (payments.c.lease_expire_time.is_(None)) | (payments.c.lease_expire_time < now),
                (payments.c.in_flight_until.is_(None)) | (payments.c.in_flight_until < now),
            )
            .order_by(payments.c.update_time)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(of=payments, skip_locked=True)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            by_batch: dict[int, list[Row[Any]]] = defaultdict(list)
            for row in rows:
                by_batch[int(row.batch_id)].append(row)
            for batch_id, group in by_batch.items():
                uid = (await conn.execute(select(batches.c.uid).where(batches.c.id == batch_id))).scalar_one()
                await _insert_work(
                    conn, batch_id, build(uid, [PaymentRow.from_row(r) for r in group], True), now
                )
                numbers = [int(r.number) for r in group]
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.number.in_(numbers),
                        payments.c.status == S.SENT.value,
                    )
                    .values(sweeps=payments.c.sweeps + 1, update_time=now)
                )
                await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.number.in_(numbers),
                        payments.c.status == S.SENT.value,
                        payments.c.sweeps > max_sweeps,
                    )
                    .values(attention_reason=STUCK_UNANSWERED)
                )
        return len(rows)

    async def record_dead_letter(
        self,
        rail: str,
        chunk_id: str,
        batch_uid: str,
        numbers: Sequence[int],
        reason: str,
        payload: bytes,
        *,
        redrive: WorkBuilder | None = None,
        max_redrives: int = 3,
        redrive_after_s: float = 60.0,
    ) -> DeadLetterOutcome:
        """Keeps a dead-lettered chunk for operators. With `redrive`, the chunk's payments no claim ever
        took (REDRIVABLE) are sent again with their keys in new work, held back `redrive_after_s` (doubled
        on each re-drive of the same payment); those already re-driven `max_redrives` times, and the
        chunk's other unfinished payments (SENT ones are the sweeper's), are flagged for attention.

        One statement of each kind per dead letter, whatever its size. The rows are locked without SKIP
        LOCKED, unlike the sweeper's: a dead letter comes once, so a row skipped would never be re-driven.
        A claim or relay commit holding one is waited for, and a row a claim took meanwhile (SENT) is left
        out; a re-drive that repeats another (two copies of a chunk) only adds a chunk claims skip."""
        now = utcnow()
        redriven: list[Row[Any]] = []
        exhausted = 0
        async with self.engine.begin() as conn:
            batch_id = None
            if batch_uid:
                batch_id = (
                    await conn.execute(select(batches.c.id).where(batches.c.uid == batch_uid))
                ).scalar_one_or_none()
            await conn.execute(
                insert(dead_letters).values(
                    rail=rail,
                    chunk_id=chunk_id,
                    batch_id=batch_id,
                    payment_count=len(numbers),
                    reason=reason,
                    payload=payload,
                    create_time=now,
                )
            )
            if batch_id is None or not numbers:
                return DeadLetterOutcome(0, 0)
            chunk = (payments.c.batch_id == batch_id, payments.c.number.in_(list(numbers)))
            redrivable = payments.c.status.in_([s.value for s in REDRIVABLE])
            spent = and_(redrivable, payments.c.redrives >= max_redrives)
            if redrive is not None:
                # Before the re-drive below counts its own payments: only earlier re-drives exhaust.
                attention = REDRIVES_EXHAUSTED.format(
                    chunk_id=chunk_id, reason=reason, redrives=max_redrives, rail=rail
                )
                exhausted = (
                    await conn.execute(
                        update(payments).where(*chunk, spent).values(attention_reason=attention)
                    )
                ).rowcount
                # Held back, longer each time, so a chunk that fails for good does not spin.
                redriven = await self._redrive(
                    conn,
                    batch_id,
                    batch_uid,
                    numbers,
                    redrive,
                    now,
                    bound=max_redrives,
                    hold_s=redrive_after_s,
                )
            await conn.execute(
                update(payments)
                .where(
                    *chunk,
                    payments.c.status.in_(PENDING),
                    payments.c.number.not_in([int(r.number) for r in redriven]),
                    ~spent if redrive is not None else true(),
                )
                .values(attention_reason=f"work chunk {chunk_id} was dead-lettered ({reason})")
            )
        return DeadLetterOutcome(len(redriven), max(exhausted, 0))

    async def _redrive(
        self,
        conn: AsyncConnection,
        batch_id: int,
        batch_uid: str,
        numbers: Sequence[int],
        build: WorkBuilder,
        now: dt.datetime,
        *,
        bound: int | None,
        hold_s: float,
    ) -> list[Row[Any]]:
        """Sends the payments of `numbers` that no claim ever took (REDRIVABLE) again with their keys, in
        new work held back `hold_s` doubled per earlier re-drive (0: at once); with `bound`, only those
        re-driven fewer times. Their attention flag is cleared. Returns them (locked until the commit)."""
        chunk = (payments.c.batch_id == batch_id, payments.c.number.in_(list(numbers)))
        redrivable = payments.c.status.in_([s.value for s in REDRIVABLE])
        query = select(payments).where(*chunk, redrivable).order_by(payments.c.number)
        if bound is not None:
            query = query.where(payments.c.redrives < bound)
        rows = list((await conn.execute(_locked(query, self.is_postgres))).all())
        if not rows:
            return rows
        await conn.execute(
            update(payments)
            .where(*chunk, payments.c.number.in_([int(r.number) for r in rows]), redrivable)
            .values(redrives=payments.c.redrives + 1, attention_reason="", update_time=now)
        )
        not_before = (
            now + dt.timedelta(seconds=hold_s * 2 ** max(int(r.redrives) for r in rows)) if hold_s else None
        )
        work = build(batch_uid, [PaymentRow.from_row(r) for r in rows], False)
        await _insert_work(conn, batch_id, [replace(w, not_before=not_before) for w in work], now)
        return rows

    async def get_dead_letter(self, dead_letter_id: int) -> Row[Any] | None:
        """A dead letter with its batch's uid (None when it named no known batch)."""
        query = (
            select(dead_letters, batches.c.uid, batches.c.program)
            .outerjoin(batches, batches.c.id == dead_letters.c.batch_id)
            .where(dead_letters.c.id == dead_letter_id)
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).one_or_none()

    async def redrive(
        self,
        batch_id: int,
        batch_uid: str,
        numbers: Sequence[int],
        request_id: str,
        build: WorkBuilder,
        audit: AuditEvent | None = None,
    ) -> int | None:
        """An operator's re-drive of these payments (a dead letter's): those no claim ever took go out again
        at once with their keys, however often they were re-driven before; None if this request_id
        already acted on the batch. The same code as the automatic re-drive, without its bound."""
        now = utcnow()
        async with self.engine.begin() as conn:
            if not await _record_operation(conn, batch_id, request_id, "redrive", now):
                return None
            rows = await self._redrive(conn, batch_id, batch_uid, numbers, build, now, bound=None, hold_s=0)
            if audit is not None:
                await self._audit(conn, replace(audit, batch_uid=batch_uid, payment_count=len(rows)))
        return len(rows)

    async def cancel_payment(self, batch_id: int, number: int, audit: AuditEvent | None = None) -> bool:
        """CANCELLED if no rail has claimed the payment yet (the state table's sources of CANCELLED); False,
        changing nothing, otherwise. Work already queued for it skips it (claims skip final payments)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(payments)
                .where(
                    payments.c.batch_id == batch_id,
                    payments.c.number == number,
                    payments.c.status.in_([s.value for s in sources_of(S.CANCELLED)]),
                )
                .values(
                    status=S.CANCELLED.value,
                    reason_code="rjct.payment.cancelled",
                    reason_message="payment cancelled",
                    attention_reason="",
                    update_time=now,
                )
            )
            if changed.rowcount <= 0:
                return False
            await _count_unfinished(conn, batch_id, -1)
            if audit is not None:
                await self._audit(conn, replace(audit, payment_count=1))
        return True

    async def resolve_payment(
        self,
        batch_id: int,
        batch_uid: str,
        number: int,
        request_id: str,
        build: WorkBuilder,
        audit: AuditEvent | None = None,
    ) -> str | None:
        """An operator resolves a payment flagged for attention, never by executing it blindly. Returns what
        was done: "lookup" (SENT: a verify-only chunk asks its rail, whose answer settles it; its sweep
        count starts again), "redrive" (never claimed: sent again with its key), "acknowledge" (final:
        the flag is cleared); None if this request_id already acted. NothingToDo if it is not flagged."""
        now = utcnow()
        async with self.engine.begin() as conn:
            if not await _record_operation(conn, batch_id, request_id, "resolve", now):
                return None
            one = (payments.c.batch_id == batch_id, payments.c.number == number)
            row = (await conn.execute(_locked(select(payments).where(*one), self.is_postgres))).one()
            status = S(row.status)
            if not row.attention_reason:
                raise NothingToDo("not flagged")  # rolls back: the request id stays free
            if status is S.SENT:
                await _insert_work(conn, batch_id, build(batch_uid, [PaymentRow.from_row(row)], True), now)
                await conn.execute(
                    update(payments).where(*one, payments.c.status == S.SENT.value).values(sweeps=0)
                )
                action = "lookup"
            elif status in REDRIVABLE:
                await self._redrive(conn, batch_id, batch_uid, [number], build, now, bound=None, hold_s=0)
                action = "redrive"
            else:
                await conn.execute(update(payments).where(*one).values(attention_reason=""))
                action = "acknowledge"
            if audit is not None:
                detail = {**audit.detail, "action": action, "attention_reason": row.attention_reason[:1024]}
                await self._audit(conn, replace(audit, batch_uid=batch_uid, payment_count=1, detail=detail))
        return action

    async def list_dead_letters(self, rail: str, before_id: int | None, limit: int) -> list[Any]:
        query = (
            select(
                dead_letters.c.id,
                dead_letters.c.rail,
                dead_letters.c.chunk_id,
                batches.c.uid,
                dead_letters.c.payment_count,
                dead_letters.c.reason,
                dead_letters.c.create_time,
            )
            .outerjoin(batches, batches.c.id == dead_letters.c.batch_id)
            .order_by(dead_letters.c.id.desc())
            .limit(limit)
        )
        if rail:
            query = query.where(dead_letters.c.rail == rail)
        if before_id is not None:
            query = query.where(dead_letters.c.id < before_id)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def republish_unfinished(self) -> int:
        """For the in-process queue, which forgets everything on a restart: every published chunk of a
        batch still in progress goes out again (claims skip what is already final)."""
        async with self.engine.begin() as conn:
            in_progress = select(batches.c.id).where(
                batches.c.state.in_([BatchState.PROCESSING.value, BatchState.CANCELLED.value])
            )
            result = await conn.execute(
                update(outbox)
                .where(outbox.c.publish_time.is_not(None), outbox.c.batch_id.in_(in_progress))
                .values(publish_time=None)
            )
        return max(result.rowcount, 0)

    async def cancel_batch(self, batch_id: int, audit: AuditEvent | None = None) -> None:
        """Payments no rail has claimed become CANCELLED; claimed ones finish on their rail."""
        now = utcnow()
        async with self.engine.begin() as conn:
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
                    reason_message="batch cancelled",
                    update_time=now,
                )
            )
            await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.state.in_([BatchState.UPLOADING.value, BatchState.PROCESSING.value]),
                )
                .values(state=BatchState.CANCELLED.value, update_time=now)
            )
            # After the state: a CANCELLED batch stays CANCELLED whatever its count.
            await _count_unfinished(conn, batch_id, -max(cancelled.rowcount, 0))
            if audit is not None:
                await self._audit(conn, replace(audit, payment_count=max(cancelled.rowcount, 0)))

    # ---- reads ---------------------------------------------------------------------------------

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


class ChunkTransaction:
    """What intake does inside one chunk's transaction."""

    def __init__(self, conn: AsyncConnection, batch: BatchRecord, is_postgres: bool) -> None:
        self.conn = conn
        self.batch = batch
        self.is_postgres = is_postgres

    async def write(
        self,
        sequence: int,
        rows: Sequence[NewPayment],
        work: Sequence[NewWorkChunk],
        received_total_hundredths: int,
    ) -> None:
        """Raises ReferenceTaken (the transaction is then unusable) when a reference is already stored."""
        now = utcnow()
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
                        "trace_context": w.trace_context,
                    }
                    for w in work
                ],
            )
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


async def _mark_published(
    conn: AsyncConnection, published: Sequence[tuple[PublishableChunk, Sequence[int]]]
) -> None:
    """After the broker confirmed these chunks: record it and move their payments to QUEUED."""
    if not published:
        return
    now = utcnow()
    await conn.execute(
        update(outbox).where(outbox.c.id.in_([c.id for c, _ in published])).values(publish_time=now)
    )
    for chunk, numbers in published:
        await conn.execute(
            update(payments)
            .where(
                payments.c.batch_id == chunk.batch_id,
                _in(payments.c.number, numbers, conn.dialect.name == "postgresql", BigInteger),
                payments.c.status.in_([s.value for s in sources_of(S.QUEUED)]),
            )
            .values(status=S.QUEUED.value, update_time=now)
        )


async def _insert_work(
    conn: AsyncConnection, batch_id: int, work: Sequence[NewWorkChunk], now: dt.datetime
) -> None:
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


async def _record_operation(
    conn: AsyncConnection, batch_id: int, request_id: str, kind: str, now: dt.datetime
) -> bool:
    """False if this request_id already acted on the batch (AIP-155); an empty request_id always acts."""
    if not request_id:
        return True
    seen = await conn.execute(
        select(batch_operations.c.kind).where(
            batch_operations.c.batch_id == batch_id, batch_operations.c.request_id == request_id
        )
    )
    if seen.first() is not None:
        return False
    await conn.execute(
        insert(batch_operations).values(batch_id=batch_id, request_id=request_id, kind=kind, create_time=now)
    )
    return True


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


def _in(column: Any, values: Sequence[Any], is_postgres: bool, item_type: Any) -> Any:
    """column IN values: on PostgreSQL as = ANY(array), one parameter whatever the chunk size, so the
    statement is prepared once instead of once per list length."""
    if is_postgres:
        return column == any_(literal(list(values), ARRAY(item_type)))
    return column.in_(values)


async def _hold_sqlite_writer(conn: AsyncConnection, batch_id: int) -> None:
    """SQLite takes its single writer lock at the first write; take it now, so that what the transaction
    reads before it writes cannot go stale under a concurrent writer (PostgreSQL locks rows instead)."""
    await conn.execute(text("UPDATE batches SET update_time = update_time WHERE id = :id"), {"id": batch_id})


def _locked(query: Select[Any], is_postgres: bool) -> Select[Any]:
    return query.with_for_update() if is_postgres else query


def _by_source(results: Sequence[ResultUpdate]) -> dict[PaymentStatus, list[ResultUpdate]]:
    """Groups outcomes by the status they leave: SENT for SUCCEEDED/FAILED, SUCCEEDED for REVERSED."""
    groups: dict[PaymentStatus, list[ResultUpdate]] = defaultdict(list)
    for r in results:
        (source,) = sources_of(r.status) & {S.SENT, S.SUCCEEDED}
        groups[source].append(r)
    return groups


def _free_at(
    lease_expire_time: dt.datetime | None, in_flight_until: dt.datetime | None
) -> dt.datetime | None:
    """When nobody can still be executing a SENT payment: its lease's end, or its in-flight window's end
    if later (rows claimed before migration 0008 have no window). None: nobody holds it."""
    ends = [t for t in (_aware(lease_expire_time), _aware(in_flight_until)) if t is not None]
    return max(ends) if ends else None


def _create_private(path: Path) -> None:
    """The SQLite file readable by its owner only (0600, in a 0700 folder when GPO creates it): it holds
    people's names and account numbers. SQLite gives its -wal and -shm files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; GPO stores UTC only."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _as_dict(row: NewPayment) -> dict[str, Any]:
    return row._asdict()


async def _count_unfinished(conn: AsyncConnection, batch_id: int, change: int = 0) -> None:
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
