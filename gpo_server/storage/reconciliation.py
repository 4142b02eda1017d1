"""Every SQL statement of statement reconciliation: importing a parsed bank statement (its entries, what
they matched, returns applied as reversals) and reading a batch's reconciliation.

Matching reads the candidate batches' payments in slices by primary key, so memory is the statement's
size, not the batches'. Totals are computed for a set of batches (`totals`): a batch's report, and a
program cycle's over its batches (`cycle_reconciliation`, the cycle's batch ids as a subquery).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from sqlalchemy import Select, and_, case, exists, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gpo_kernel.masking import mask_account
from gpo_server.domain.reconciliation import (
    CONFIRMING,
    PAID,
    PROBLEMS,
    RETURN_REASON_CODE,
    RETURNED_NOT_SUCCEEDED,
    RETURNS,
    EntryResult,
    Matcher,
    Outcome,
    PaymentKeys,
)
from gpo_server.domain.states import BatchState, PaymentStatus, sources_of
from gpo_server.statements.records import ParsedStatement
from gpo_server.storage import audit as audit_trail
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.tables import (
    batches,
    payments,
    statement_batches,
    statement_entries,
    statement_matches,
    statements,
)

S = PaymentStatus
SLICE = 5000  # payments read per query while matching
# Without named batches, a statement is matched against the batches created this long before its
# latest booking (and any time after it) that are past their upload.
DEFAULT_WINDOW = dt.timedelta(days=35)


@dataclass(frozen=True, slots=True)
class ImportedStatement:
    id: int
    account: str
    statement_ref: str
    format: str
    entry_count: int
    reversed_count: int
    create_time: dt.datetime
    outcomes: dict[str, int]  # entries per outcome
    batch_ids: list[int]
    already_imported: bool = False


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    """One currency of a reconciliation report: counts and hundredths."""

    currency: str
    paid_count: int = 0  # SUCCEEDED or REVERSED: the rail reported it paid
    paid_hundredths: int = 0
    confirmed_count: int = 0  # found booked (or returned) on a statement
    confirmed_hundredths: int = 0
    reversed_count: int = 0
    reversed_hundredths: int = 0


@dataclass(frozen=True, slots=True)
class Totals:
    declared_count: int  # what the batches' headers declared
    declared_hundredths: int
    currencies: list[CurrencyTotals]


@dataclass(frozen=True, slots=True)
class CycleReconciliation:
    batch_count: int
    problems: Sequence[Any]  # entries needing an operator, of statements matched against the batches
    unconfirmed: Sequence[Any]  # SUCCEEDED payments no statement has shown booked, with their batch's uid
    unconfirmed_count: int
    totals: Totals


# A set of batches: their ids, or a query of them (one column, batches.id).
BatchSet: TypeAlias = Sequence[int] | Select[Any]


@dataclass(frozen=True, slots=True)
class BatchReconciliation:
    matched: Sequence[Any]  # one per (entry, payment)
    problems: Sequence[Any]  # entries of the batch's statements an operator must look at
    unconfirmed: Sequence[Any]  # SUCCEEDED payments no statement has shown booked
    unconfirmed_count: int
    totals: Totals


class ReconciliationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    async def find_batch_ids(self, uids: Sequence[str]) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(batches.c.uid, batches.c.id).where(batches.c.uid.in_(uids)))
            ).all()
        return {uid: int(i) for uid, i in rows}

    async def import_statement(
        self, parsed: ParsedStatement, digest: str, batch_ids: Sequence[int] | None, audit: AuditEvent
    ) -> ImportedStatement:
        """Stores the statement and its entries, matches them against the batches' payments and reverses
        the payments it shows returned, in one transaction. A statement already imported (same account and
        statement id) is returned as it was stored, and nothing changes."""
        if (existing := await self._existing(parsed)) is not None:
            return existing
        try:
            return await self._import(parsed, digest, batch_ids, audit)
        except IntegrityError:
            # A concurrent import of the same statement committed first.
            if (existing := await self._existing(parsed)) is not None:
                return existing
            raise

    async def _import(
        self, parsed: ParsedStatement, digest: str, batch_ids: Sequence[int] | None, audit: AuditEvent
    ) -> ImportedStatement:
        now = dt.datetime.now(dt.UTC)
        async with self.engine.begin() as conn:
            statement_id = (
                await conn.execute(
                    insert(statements)
                    .values(
                        account=parsed.account,
                        statement_ref=parsed.statement_id,
                        format=parsed.format,
                        digest=digest,
                        entry_count=len(parsed.entries),
                        create_time=now,
                    )
                    .returning(statements.c.id)
                )
            ).scalar_one()
            chosen = list(batch_ids) if batch_ids is not None else await self._window(conn, parsed)
            matcher = Matcher(parsed.entries)
            for batch_id in chosen:
                await self._offer(conn, matcher, batch_id)
            results = matcher.results()
            entry_ids = await self._store_entries(conn, statement_id, results)
            matches = [
                {"entry_id": entry_ids[r.entry.number], "batch_id": p.batch_id, "number": p.number}
                for r in results
                for p in r.payments
            ]
            if matches:
                await conn.execute(insert(statement_matches), matches)
            if chosen:
                await conn.execute(
                    insert(statement_batches), [{"statement_id": statement_id, "batch_id": b} for b in chosen]
                )
            reversed_count, flagged_count = await self._reverse(conn, parsed, results, now)
            await conn.execute(
                update(statements)
                .where(statements.c.id == statement_id)
                .values(reversed_count=reversed_count)
            )
            outcomes = dict(Counter(r.outcome.value for r in results))
            await audit_trail.append(
                conn,
                replace(
                    audit,
                    payment_count=len(matches),
                    detail={
                        **audit.detail,
                        "statement": parsed.statement_id,
                        "account": mask_account(parsed.account),
                        "format": parsed.format,
                        "entries": len(parsed.entries),
                        "outcomes": outcomes,
                        "reversed": reversed_count,
                        "flagged": flagged_count,
                    },
                ),
                is_postgres=self.is_postgres,
            )
        return ImportedStatement(
            id=int(statement_id),
            account=parsed.account,
            statement_ref=parsed.statement_id,
            format=parsed.format,
            entry_count=len(parsed.entries),
            reversed_count=reversed_count,
            create_time=now,
            outcomes=outcomes,
            batch_ids=chosen,
        )

    async def _existing(self, parsed: ParsedStatement) -> ImportedStatement | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(statements).where(
                        statements.c.account == parsed.account,
                        statements.c.statement_ref == parsed.statement_id,
                    )
                )
            ).one_or_none()
            if row is None:
                return None
            outcomes = (
                await conn.execute(
                    select(statement_entries.c.outcome, func.count())
                    .where(statement_entries.c.statement_id == row.id)
                    .group_by(statement_entries.c.outcome)
                )
            ).all()
            linked = (
                await conn.execute(
                    select(statement_batches.c.batch_id)
                    .where(statement_batches.c.statement_id == row.id)
                    .order_by(statement_batches.c.batch_id)
                )
            ).scalars()
            return ImportedStatement(
                id=int(row.id),
                account=row.account,
                statement_ref=row.statement_ref,
                format=row.format,
                entry_count=int(row.entry_count),
                reversed_count=int(row.reversed_count),
                create_time=_aware(row.create_time),
                outcomes={o: int(n) for o, n in outcomes},
                batch_ids=[int(b) for b in linked],
                already_imported=True,
            )

    async def _window(self, conn: AsyncConnection, parsed: ParsedStatement) -> list[int]:
        dates = [e.booking_date for e in parsed.entries if e.booking_date is not None]
        latest = max(dates) if dates else dt.datetime.now(dt.UTC).date()
        since = dt.datetime.combine(latest, dt.time(), dt.UTC) - DEFAULT_WINDOW
        rows = await conn.execute(
            select(batches.c.id)
            .where(batches.c.state != BatchState.UPLOADING.value, batches.c.create_time >= since)
            .order_by(batches.c.id)
        )
        return [int(i) for i in rows.scalars()]

    async def _offer(self, conn: AsyncConnection, matcher: Matcher, batch_id: int) -> None:
        """Offers the batch's accepted payments (those with a rail) to the matcher, one slice at a time."""
        after = 0
        while True:
            rows = (
                await conn.execute(
                    select(
                        payments.c.number,
                        payments.c.status,
                        payments.c.amount_hundredths,
                        payments.c.currency_code,
                        payments.c.idempotency_key,
                        payments.c.rail_reference,
                    )
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.number > after,
                        payments.c.rail.is_not(None),
                    )
                    .order_by(payments.c.number)
                    .limit(SLICE)
                )
            ).all()
            if not rows:
                return
            matcher.offer(
                PaymentKeys(batch_id, int(n), S(s), int(a or 0), c, k, r or "") for n, s, a, c, k, r in rows
            )
            after = int(rows[-1][0])

    async def _store_entries(
        self, conn: AsyncConnection, statement_id: int, results: Sequence[EntryResult]
    ) -> dict[int, int]:
        if results:
            await conn.execute(
                insert(statement_entries),
                [
                    {
                        "statement_id": statement_id,
                        "number": r.entry.number,
                        "amount_hundredths": r.entry.amount_hundredths,
                        "currency_code": r.entry.currency,
                        "credit": r.entry.credit,
                        "booked": r.entry.booked,
                        "booking_date": r.entry.booking_date,
                        "end_to_end_ids": json.dumps(list(r.entry.end_to_end_ids)),
                        "servicer_reference": r.entry.servicer_reference,
                        "batch_reference": r.entry.batch_reference,
                        "batch_count": r.entry.batch_count,
                        "returned": r.entry.returned,
                        "return_reason": r.entry.return_reason,
                        "outcome": r.outcome.value,
                        "note": r.note,
                    }
                    for r in results
                ],
            )
        rows = await conn.execute(
            select(statement_entries.c.number, statement_entries.c.id).where(
                statement_entries.c.statement_id == statement_id
            )
        )
        return {int(n): int(i) for n, i in rows}

    async def _reverse(
        self, conn: AsyncConnection, parsed: ParsedStatement, results: Sequence[EntryResult], now: dt.datetime
    ) -> tuple[int, int]:
        """Moves the payments of returned entries to REVERSED through the state machine's one transition
        (from SUCCEEDED); the payment history trigger records the change (cause "reversal"). A payment not
        SUCCEEDED (nor already REVERSED) keeps its status, a SENT one being its rail's to settle, and is
        flagged for an operator's attention. Returns how many were reversed and how many flagged."""
        count = flagged = 0
        for r in results:
            if r.outcome not in RETURNS:
                continue
            message = (
                f"returned on statement {parsed.statement_id} entry {r.entry.number}"
                + (f": {r.entry.return_reason}" if r.entry.return_reason else "")
            )[:1000]
            if r.outcome is Outcome.RETURN_NOT_SUCCEEDED:
                flagged += await self._flag_unpaid(conn, parsed, r)
            for p in r.payments:
                changed = await conn.execute(
                    update(payments)
                    .where(
                        payments.c.batch_id == p.batch_id,
                        payments.c.number == p.number,
                        payments.c.status.in_([s.value for s in sources_of(S.REVERSED)]),
                    )
                    .values(
                        status=S.REVERSED.value,
                        reason_code=RETURN_REASON_CODE,
                        reason_message=message,
                        update_time=now,
                    )
                )
                count += max(changed.rowcount, 0)
        return count, flagged

    async def _flag_unpaid(self, conn: AsyncConnection, parsed: ParsedStatement, result: EntryResult) -> int:
        """Flags the entry's payments that are not paid in GPO for attention (as the sweeper flags a stuck
        payment), keeping a reason they were flagged for before after the new one."""
        flagged = 0
        for p in result.payments:
            reason = RETURNED_NOT_SUCCEEDED.format(
                statement=parsed.statement_id[:64],
                entry=result.entry.number,
                reason=f": {result.entry.return_reason[:200]}" if result.entry.return_reason else "",
                status=p.status.value,
            )
            earlier = payments.c.attention_reason
            changed = await conn.execute(
                update(payments)
                .where(
                    payments.c.batch_id == p.batch_id,
                    payments.c.number == p.number,
                    payments.c.status.not_in([s.value for s in PAID]),
                )
                .values(
                    attention_reason=case(
                        (earlier == "", reason), else_=literal(reason + "; flagged before: ") + earlier
                    )
                )
            )
            flagged += max(changed.rowcount, 0)
        return flagged

    # ---- reads ---------------------------------------------------------------------------------

    async def batch_reconciliation(self, batch_id: int, limit: int) -> BatchReconciliation:
        """What the statements say of one batch; each list holds at most `limit` rows."""
        async with self.engine.connect() as conn:
            matched = (
                await conn.execute(
                    select(
                        statement_matches.c.number,
                        payments.c.reference_id,
                        payments.c.amount_hundredths,
                        payments.c.currency_code,
                        payments.c.status,
                        statement_entries.c.statement_id,
                        statement_entries.c.number.label("entry_number"),
                        statement_entries.c.outcome,
                        statement_entries.c.booking_date,
                    )
                    .join(statement_entries, statement_entries.c.id == statement_matches.c.entry_id)
                    .join(statements, statements.c.id == statement_entries.c.statement_id)
                    .join(
                        payments,
                        and_(
                            payments.c.batch_id == statement_matches.c.batch_id,
                            payments.c.number == statement_matches.c.number,
                        ),
                    )
                    .where(statement_matches.c.batch_id == batch_id)
                    .order_by(statement_matches.c.number, statement_entries.c.id)
                    .limit(limit)
                )
            ).all()
            problems = (
                await conn.execute(
                    select(statement_entries, statements.c.statement_ref)
                    .join(statements, statements.c.id == statement_entries.c.statement_id)
                    .join(statement_batches, statement_batches.c.statement_id == statements.c.id)
                    .where(
                        statement_batches.c.batch_id == batch_id,
                        statement_entries.c.outcome.in_([o.value for o in PROBLEMS]),
                    )
                    .order_by(statement_entries.c.id)
                    .limit(limit)
                )
            ).all()
            unconfirmed, unconfirmed_count = await _unconfirmed(conn, [batch_id], limit)
            totals = await _totals(conn, [batch_id])
        return BatchReconciliation(matched, problems, unconfirmed, unconfirmed_count, totals)

    async def cycle_reconciliation(self, program: str, cycle: str, limit: int) -> CycleReconciliation:
        """What the statements say of a program cycle's batches, each list at most `limit` rows. Every
        statement takes the cycle's batches as a subquery (ix_batches_program_cycle): no query per batch."""
        # Never correlated: the queries it goes into read `batches` themselves.
        of_cycle = (
            select(batches.c.id).where(batches.c.program == program, batches.c.cycle == cycle).correlate(None)
        )
        async with self.engine.connect() as conn:
            batch_count = (
                await conn.execute(select(func.count()).select_from(of_cycle.subquery()))
            ).scalar_one()
            statements_of_cycle = select(statement_batches.c.statement_id).where(
                statement_batches.c.batch_id.in_(of_cycle)
            )
            problems = (
                await conn.execute(
                    select(statement_entries, statements.c.statement_ref)
                    .join(statements, statements.c.id == statement_entries.c.statement_id)
                    .where(
                        statement_entries.c.statement_id.in_(statements_of_cycle),
                        statement_entries.c.outcome.in_([o.value for o in PROBLEMS]),
                    )
                    .order_by(statement_entries.c.id)
                    .limit(limit)
                )
            ).all()
            unconfirmed, unconfirmed_count = await _unconfirmed(conn, of_cycle, limit)
            totals = await _totals(conn, of_cycle)
        return CycleReconciliation(int(batch_count), problems, unconfirmed, unconfirmed_count, totals)

    async def totals(self, batch_ids: BatchSet) -> Totals:
        """Declared, paid, confirmed on a statement and reversed, over a set of batches (a batch, or a
        cycle's batches)."""
        async with self.engine.connect() as conn:
            return await _totals(conn, batch_ids)


async def _unconfirmed(conn: AsyncConnection, batch_ids: BatchSet, limit: int) -> tuple[list[Any], int]:
    """The SUCCEEDED payments of a set of batches that no statement has shown booked (at most `limit`,
    with their batch's uid), and how many there are in all."""
    where = (
        payments.c.batch_id.in_(batch_ids),
        payments.c.status == S.SUCCEEDED.value,
        ~_confirmed_clause(),
    )
    rows = (
        await conn.execute(
            select(
                batches.c.uid,
                payments.c.number,
                payments.c.reference_id,
                payments.c.amount_hundredths,
                payments.c.currency_code,
                payments.c.rail,
                payments.c.rail_reference,
            )
            .select_from(payments.join(batches, batches.c.id == payments.c.batch_id))
            .where(*where)
            .order_by(payments.c.batch_id, payments.c.number)
            .limit(limit)
        )
    ).all()
    count = (await conn.execute(select(func.count()).select_from(payments).where(*where))).scalar_one()
    return list(rows), int(count)


def _confirmed_clause() -> Any:
    """The payment (of the outer query) is booked or returned by some statement entry."""
    return exists(
        select(1)
        .select_from(
            statement_matches.join(statement_entries, statement_entries.c.id == statement_matches.c.entry_id)
        )
        .where(
            statement_matches.c.batch_id == payments.c.batch_id,
            statement_matches.c.number == payments.c.number,
            statement_entries.c.outcome.in_([o.value for o in CONFIRMING]),
        )
    )


async def _totals(conn: AsyncConnection, batch_ids: BatchSet) -> Totals:
    """Two statements whatever the set's size: the batches' declared figures, and their paid payments
    grouped by currency, status and whether a statement confirmed them."""
    declared = (
        await conn.execute(
            select(
                func.coalesce(func.sum(batches.c.expected_payment_count), 0),
                func.coalesce(func.sum(batches.c.expected_total_hundredths), 0),
            ).where(batches.c.id.in_(batch_ids))
        )
    ).one()
    paid_statuses = [S.SUCCEEDED.value, S.REVERSED.value]
    amount = func.coalesce(payments.c.amount_hundredths, 0)
    rows = (
        await conn.execute(
            select(
                payments.c.currency_code,
                payments.c.status,
                _confirmed_clause().label("confirmed"),
                func.count(),
                func.sum(amount),
            )
            .where(payments.c.batch_id.in_(batch_ids), payments.c.status.in_(paid_statuses))
            .group_by(payments.c.currency_code, payments.c.status, "confirmed")
        )
    ).all()
    by_currency: dict[str, dict[str, int]] = {}
    for currency, status, confirmed, count, hundredths in rows:
        t = by_currency.setdefault(currency, Counter())
        t["paid_count"] += int(count)
        t["paid_hundredths"] += int(hundredths)
        if confirmed:
            t["confirmed_count"] += int(count)
            t["confirmed_hundredths"] += int(hundredths)
        if status == S.REVERSED.value:
            t["reversed_count"] += int(count)
            t["reversed_hundredths"] += int(hundredths)
    return Totals(
        declared_count=int(declared[0]),
        declared_hundredths=int(declared[1]),
        currencies=[CurrencyTotals(c, **by_currency[c]) for c in sorted(by_currency)],
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
