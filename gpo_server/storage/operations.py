"""The Store's part for operators and background duties: retries, re-drives, cancels, sweeps,
dead letters and the audit trail."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    Row,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.states import (
    FINAL,
    REDRIVABLE,
    BatchState,
    PaymentStatus,
    operator_sources_of,
    sources_of,
)
from gpo_server.storage import audit as audit_trail
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.cycles import check_budget, holds_beneficiary, over_budget, read_cycle
from gpo_server.storage.funds import release_funds_of
from gpo_server.storage.records import (
    BatchRecord,
    DeadLetterOutcome,
    NothingToDo,
    PaymentRow,
    WorkBuilder,
)
from gpo_server.storage.sql import (
    S,
    StorePart,
    cancel_in,
    count_unfinished,
    insert_work,
    locked,
    utcnow,
)
from gpo_server.storage.tables import (
    audit_events,
    batch_operations,
    batches,
    dead_letters,
    payments,
)

PENDING = tuple(s.value for s in PaymentStatus if s not in FINAL)

STUCK_UNANSWERED = (
    "stuck: SENT past the stuck-payment timeout and the rail has not answered repeated look-ups"
)
PAID_TWICE = "paid more than once: the rail executed this key {executions} times"
REDRIVES_EXHAUSTED = (
    "work chunk {chunk_id} was dead-lettered ({reason}) after this payment had been sent again {redrives}"
    " times: no longer sent by itself. Never claimed, so never paid. Find the cause under chunk {chunk_id}"
    " in rail {rail}'s sidecar log and its dead letters (gpo dead-letters); CancelBatch cancels it"
)
WORK_SLICE = 1000


class OperationsStore(StorePart):
    """Operators' actions and the background duties: retry, re-drive, resolve, cancel, sweep, dead
    letters, and the audit trail."""

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
        chosen: Any = payments.c.number.in_(list(numbers)) if numbers is not None else true()
        kind = "retry_failed" if numbers is None else "retry_payment"
        async with self.engine.begin() as conn:
            if not await _record_operation(conn, batch_id, request_id, kind, now):
                return None
            query = select(batches).where(batches.c.id == batch_id)
            batch = BatchRecord.from_row((await conn.execute(locked(query, self.is_postgres))).one())
            if batch.cycle:
                # Under the cycle's row lock (after the batch's, the order everywhere): a failed payment whose
                # beneficiary a later batch took is not sent again, and the rest must fit the budget.
                chosen = and_(chosen, await _cycle_retry_rule(conn, batch, retryable, chosen))
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
                await insert_work(conn, batch_id, build(batch.uid, retried, False), now)
                total += len(rows)
            if numbers is not None and not total:
                raise NothingToDo("not FAILED")  # rolls back: the request id stays free
            if total:
                await count_unfinished(conn, batch_id, total)
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
                await insert_work(
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
        rows = list((await conn.execute(locked(query, self.is_postgres))).all())
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
        await insert_work(conn, batch_id, [replace(w, not_before=not_before) for w in work], now)
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
            await count_unfinished(conn, batch_id, -1)
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
            row = (await conn.execute(locked(select(payments).where(*one), self.is_postgres))).one()
            status = S(row.status)
            if not row.attention_reason:
                raise NothingToDo("not flagged")  # rolls back: the request id stays free
            if status is S.SENT:
                await insert_work(conn, batch_id, build(batch_uid, [PaymentRow.from_row(row)], True), now)
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

    async def cancel_batch(self, batch_id: int, audit: AuditEvent | None = None) -> None:
        """Payments no rail has claimed become CANCELLED; claimed ones finish on their rail."""
        now = utcnow()
        async with self.engine.begin() as conn:
            cancelled = await cancel_in(conn, batch_id, now)
            # Its funds blocks with the bank are released by their rail's sidecar (docs/TREASURY.md).
            releasing = await release_funds_of(conn, batch_id, now) if cancelled.batch_ended else 0
            if audit is not None:
                detail = {**audit.detail, "funds_blocks_released": releasing} if releasing else audit.detail
                await self._audit(conn, replace(audit, payment_count=cancelled.payments, detail=detail))

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


async def _cycle_retry_rule(conn: AsyncConnection, batch: BatchRecord, retryable: Any, chosen: Any) -> Any:
    """The extra WHERE clause of a cycle batch's retry, decided under the cycle's row lock; CycleRefused
    when the payments it would send again do not fit the cycle's budget."""
    cycle = await read_cycle(conn, batch.program, batch.cycle, lock=True)
    if cycle is None:
        return true()
    rule = true() if cycle.allow_repeat_payments else holds_beneficiary(cycle)
    if cycle.budgets:
        rows = await conn.execute(
            select(payments.c.currency_code, func.coalesce(func.sum(payments.c.amount_hundredths), 0))
            .where(payments.c.batch_id == batch.id, retryable, chosen, rule)
            .group_by(payments.c.currency_code)
        )
        overrun = await check_budget(conn, cycle, {c: int(a) for c, a in rows})
        if overrun is not None:
            raise over_budget(cycle, overrun)
    return rule


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
