"""The Store's part for program cycles (domain/cycles.py): create, read and total cycles; and the
statements intake, the end of an upload and retries run inside their own transactions: who holds a
beneficiary, what a cycle has committed.

Race-freedom: every check against a cycle's budget (the end of an upload, an operator retry) and every
takeover of a freed beneficiary runs under the cycle's row lock (`lock_cycle`, SELECT ... FOR UPDATE; SQLite
has one writer), in the transaction that commits its outcome, so two batches ending at once are checked
one after the other, the second seeing the first. A beneficiary's first payment in a cycle is claimed by the
primary key of cycle_beneficiaries (INSERT ... ON CONFLICT DO NOTHING, one statement per chunk), which
makes a concurrent second claim wait for the first transaction and then find the key taken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.cycles import (
    COMMITTED,
    CYCLE_BUDGET_EXCEEDED,
    CYCLE_CLOSED,
    CYCLE_NOT_FOUND,
    FREEING,
    Overrun,
    cycle_name,
    first_overrun,
    window_problem,
)
from gpo_server.domain.money import format_amount
from gpo_server.domain.states import BatchState, PaymentStatus
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.records import CycleRefused, StatusTotal
from gpo_server.storage.sql import StorePart, in_values, utcnow
from gpo_server.storage.tables import batches, cycle_beneficiaries, cycle_budgets, cycles, payments

_SQLITE_SLICE = 2000  # rows per multi-row INSERT on SQLite (4 parameters a row, under its 32766)


@dataclass(frozen=True, slots=True)
class CycleRecord:
    id: int
    program: str
    cycle: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    allow_repeat_payments: bool
    create_time: dt.datetime
    update_time: dt.datetime
    budgets: Mapping[str, int]  # hundredths by currency; empty: not budget-controlled

    @classmethod
    def from_row(cls, row: Any, budgets: Mapping[str, int]) -> CycleRecord:
        m = row._mapping
        return cls(
            id=int(m["id"]),
            program=m["program"],
            cycle=m["cycle"],
            start_time=_utc(m["start_time"]),
            end_time=_utc(m["end_time"]),
            allow_repeat_payments=bool(m["allow_repeat_payments"]),
            create_time=_utc(m["create_time"]) or m["create_time"],
            update_time=_utc(m["update_time"]) or m["update_time"],
            budgets=dict(budgets),
        )


@dataclass(frozen=True, slots=True)
class NewCycle:
    program: str
    cycle: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None
    allow_repeat_payments: bool
    budgets: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class CycleTotals:
    """A cycle's figures: its batches and what they declared; its payments per status and currency
    (`statuses`, every batch); and what it has committed per currency (batches past their upload)."""

    batch_count: int
    declared_payment_count: int
    declared_total_hundredths: int
    statuses: list[StatusTotal]
    committed: dict[str, int]


class CycleExists(Exception):
    """The program already has a cycle of that ID."""


class CycleStore(StorePart):
    """Program cycles: create, find, list, total."""

    async def create_cycle(self, new: NewCycle, audit: AuditEvent | None = None) -> CycleRecord:
        now = utcnow()
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    insert(cycles)
                    .values(
                        program=new.program,
                        cycle=new.cycle,
                        start_time=new.start_time,
                        end_time=new.end_time,
                        allow_repeat_payments=new.allow_repeat_payments,
                        create_time=now,
                        update_time=now,
                    )
                    .returning(cycles.c.id)
                )
                cycle_id = int(result.scalar_one())
                if new.budgets:
                    await conn.execute(
                        insert(cycle_budgets),
                        [
                            {"cycle_id": cycle_id, "currency_code": c, "budget_hundredths": a}
                            for c, a in sorted(new.budgets.items())
                        ],
                    )
                if audit is not None:
                    await self._audit(conn, audit)
        except IntegrityError as exc:
            raise CycleExists(f"{new.program}/{new.cycle}") from exc
        found = await self.get_cycle(new.program, new.cycle)
        assert found is not None
        return found

    async def update_cycle(
        self,
        program: str,
        cycle: str,
        *,
        budgets: Mapping[str, int],
        start_time: dt.datetime | None,
        end_time: dt.datetime | None,
        audit: AuditEvent | None = None,
    ) -> CycleRecord | None:
        """Replaces the cycle's budgets and window, under its row lock (so no batch is checked against half
        of them); None if there is no such cycle."""
        async with self.engine.begin() as conn:
            found = await read_cycle(conn, program, cycle, lock=True)
            if found is None:
                return None
            await conn.execute(
                update(cycles)
                .where(cycles.c.id == found.id)
                .values(start_time=start_time, end_time=end_time, update_time=utcnow())
            )
            await conn.execute(cycle_budgets.delete().where(cycle_budgets.c.cycle_id == found.id))
            if budgets:
                await conn.execute(
                    insert(cycle_budgets),
                    [
                        {"cycle_id": found.id, "currency_code": c, "budget_hundredths": a}
                        for c, a in sorted(budgets.items())
                    ],
                )
            if audit is not None:
                await self._audit(conn, audit)
        return await self.get_cycle(program, cycle)

    async def get_cycle(self, program: str, cycle: str) -> CycleRecord | None:
        async with self.engine.connect() as conn:
            return await read_cycle(conn, program, cycle)

    async def program_has_cycles(self, program: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.execute(select(cycles.c.id).where(cycles.c.program == program).limit(1))
            return found.first() is not None

    async def list_cycles(
        self, *, programs: Iterable[str] | None, program: str, after_id: int | None, limit: int
    ) -> list[CycleRecord]:
        """Newest first; `programs` None means every program, else only those; `program` one of them."""
        query = select(cycles).order_by(cycles.c.id.desc()).limit(limit)
        if programs is not None:
            query = query.where(cycles.c.program.in_(sorted(programs)))
        if program:
            query = query.where(cycles.c.program == program)
        if after_id is not None:
            query = query.where(cycles.c.id < after_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            budgets = await _budgets(conn, [int(r.id) for r in rows])
        return [CycleRecord.from_row(r, budgets.get(int(r.id), {})) for r in rows]

    async def cycle_committed(self, cycle: CycleRecord) -> dict[str, int]:
        """What the cycle has committed per currency (`committed_amounts`), read without its lock."""
        async with self.engine.connect() as conn:
            return await committed_amounts(conn, cycle.program, cycle.cycle)

    async def cycle_totals(self, cycle: CycleRecord) -> CycleTotals:
        """Three set-based statements over the cycle's batches (ix_batches_program_cycle) and their payments
        (each batch's primary-key range): never a statement per payment."""
        of_cycle = and_(batches.c.program == cycle.program, batches.c.cycle == cycle.cycle)
        async with self.engine.connect() as conn:
            head = (
                await conn.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(batches.c.expected_payment_count), 0),
                        func.coalesce(func.sum(batches.c.expected_total_hundredths), 0),
                    ).where(of_cycle)
                )
            ).one()
            rows = (
                await conn.execute(
                    select(
                        payments.c.status,
                        payments.c.currency_code,
                        func.count(),
                        func.coalesce(func.sum(payments.c.amount_hundredths), 0),
                    )
                    .select_from(payments.join(batches, batches.c.id == payments.c.batch_id))
                    .where(of_cycle)
                    .group_by(payments.c.status, payments.c.currency_code)
                )
            ).all()
            committed = await committed_amounts(conn, cycle.program, cycle.cycle)
        return CycleTotals(
            batch_count=int(head[0]),
            declared_payment_count=int(head[1]),
            declared_total_hundredths=int(head[2]),
            statuses=[StatusTotal(PaymentStatus(s), c, int(n), int(a)) for s, c, n, a in rows],
            committed=committed,
        )


async def read_cycle(
    conn: AsyncConnection, program: str, cycle: str, *, lock: bool = False
) -> CycleRecord | None:
    """The cycle, with its budgets; `lock` takes its row lock (PostgreSQL) for the rest of the transaction."""
    query = select(cycles).where(cycles.c.program == program, cycles.c.cycle == cycle)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    budgets = await _budgets(conn, [int(row.id)])
    return CycleRecord.from_row(row, budgets.get(int(row.id), {}))


async def _budgets(conn: AsyncConnection, cycle_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {}
    if not cycle_ids:
        return found
    rows = await conn.execute(select(cycle_budgets).where(cycle_budgets.c.cycle_id.in_(list(cycle_ids))))
    for r in rows:
        found.setdefault(int(r.cycle_id), {})[r.currency_code] = int(r.budget_hundredths)
    return found


async def committed_amounts(conn: AsyncConnection, program: str, cycle: str) -> dict[str, int]:
    """What the cycle has committed per currency: the amounts of its batches past their upload whose
    payments are paid or on their way (domain/cycles.py, COMMITTED). One GROUP BY."""
    rows = await conn.execute(
        select(payments.c.currency_code, func.coalesce(func.sum(payments.c.amount_hundredths), 0))
        .select_from(payments.join(batches, batches.c.id == payments.c.batch_id))
        .where(
            batches.c.program == program,
            batches.c.cycle == cycle,
            batches.c.state != BatchState.UPLOADING.value,
            payments.c.status.in_(sorted(s.value for s in COMMITTED)),
        )
        .group_by(payments.c.currency_code)
    )
    return {c: int(a) for c, a in rows}


async def batch_requested(conn: AsyncConnection, batch_id: int) -> dict[str, int]:
    """A batch's amounts per currency that its upload would commit (its payments in COMMITTED statuses)."""
    rows = await conn.execute(
        select(payments.c.currency_code, func.coalesce(func.sum(payments.c.amount_hundredths), 0))
        .where(payments.c.batch_id == batch_id, payments.c.status.in_(sorted(s.value for s in COMMITTED)))
        .group_by(payments.c.currency_code)
    )
    return {c: int(a) for c, a in rows}


async def check_budget(
    conn: AsyncConnection, cycle: CycleRecord, requested: Mapping[str, int]
) -> Overrun | None:
    """Whether `requested` fits what the (locked) cycle has left; its overrun if not."""
    if not cycle.budgets:
        return None
    return first_overrun(cycle.budgets, await committed_amounts(conn, cycle.program, cycle.cycle), requested)


async def claim_beneficiaries(
    conn: AsyncConnection, cycle: CycleRecord, batch_id: int, claims: Sequence[tuple[int, str]]
) -> set[int]:
    """Makes the payments `claims` ((number, beneficiary key), keys distinct) hold their beneficiaries in
    the cycle; returns the numbers whose beneficiary another payment holds (paid or on its way). One
    INSERT ... ON CONFLICT DO NOTHING claims the free keys; a key held by a payment that FAILED, was
    CANCELLED or REVERSED is taken over under the cycle's row lock."""
    if not claims:
        return set()
    # One order of keys for every transaction: two chunks claiming the same keys wait for each other in
    # that order, never for each other both ways (a deadlock).
    claims = sorted(claims, key=lambda c: c[1])
    is_postgres = conn.dialect.name == "postgresql"
    if is_postgres:
        result = await conn.execute(
            text(
                "INSERT INTO cycle_beneficiaries (cycle_id, beneficiary_key, batch_id, number) "
                "SELECT :cycle_id, v.k, :batch_id, v.n FROM unnest(CAST(:keys AS text[]), "
                "CAST(:numbers AS bigint[])) AS v(k, n) ON CONFLICT DO NOTHING RETURNING number"
            ),
            {
                "cycle_id": cycle.id,
                "batch_id": batch_id,
                "keys": [k for _, k in claims],
                "numbers": [n for n, _ in claims],
            },
        )
        claimed = {int(n) for (n,) in result}
    else:
        claimed = set()
        for start in range(0, len(claims), _SQLITE_SLICE):
            part = claims[start : start + _SQLITE_SLICE]
            result = await conn.execute(
                sqlite_insert(cycle_beneficiaries)
                .values(
                    [
                        {"cycle_id": cycle.id, "beneficiary_key": k, "batch_id": batch_id, "number": n}
                        for n, k in part
                    ]
                )
                .on_conflict_do_nothing()
                .returning(cycle_beneficiaries.c.number)
            )
            claimed.update(int(n) for (n,) in result)
    held = [(n, k) for n, k in claims if n not in claimed]
    if not held:
        return set()
    # Taken already: by a payment paid or on its way (a duplicate), or by one whose money never reached the
    # beneficiary (free again). Takeovers and operator retries of the cycle's failed payments hold the
    # cycle's row lock, so no other transaction moves these keys or revives their holders meanwhile.
    await read_cycle(conn, cycle.program, cycle.cycle, lock=True)
    keys = [k for _, k in held]
    rows = await conn.execute(
        select(cycle_beneficiaries.c.beneficiary_key, payments.c.status)
        .select_from(
            cycle_beneficiaries.join(
                payments,
                and_(
                    payments.c.batch_id == cycle_beneficiaries.c.batch_id,
                    payments.c.number == cycle_beneficiaries.c.number,
                ),
            )
        )
        .where(
            cycle_beneficiaries.c.cycle_id == cycle.id,
            in_values(cycle_beneficiaries.c.beneficiary_key, keys, is_postgres, Text),
        )
    )
    free = {k for k, status in rows if PaymentStatus(status) in FREEING}
    taken_over = [(n, k) for n, k in held if k in free]
    if taken_over:
        await conn.execute(
            update(cycle_beneficiaries)
            .where(
                cycle_beneficiaries.c.cycle_id == cycle.id,
                cycle_beneficiaries.c.beneficiary_key == bindparam("b_key"),
            )
            .values(batch_id=batch_id, number=bindparam("b_number")),
            [{"b_key": k, "b_number": n} for n, k in taken_over],
        )
    return {n for n, k in held if k not in free}


def over_budget(cycle: CycleRecord, overrun: Overrun) -> CycleRefused:
    """The refusal of a batch (or retry) that would take the cycle past its budget in one currency."""
    return CycleRefused(
        CYCLE_BUDGET_EXCEEDED,
        f"this would take cycle {cycle.cycle!r} of program {cycle.program!r} over its "
        f"{overrun.currency_code} budget: {format_amount(overrun.budget)} budgeted, "
        f"{format_amount(overrun.committed)} committed, {format_amount(overrun.requested)} requested",
        {
            "cycle": cycle_name(cycle.program, cycle.cycle),
            "currency_code": overrun.currency_code,
            "budget": format_amount(overrun.budget),
            "committed": format_amount(overrun.committed),
            "requested": format_amount(overrun.requested),
        },
    )


async def check_cycle_at_finish(conn: AsyncConnection, batch_id: int, program: str, cycle_id: str) -> None:
    """The end of a cycle batch's upload: the cycle's window, then its budget, under the cycle's row lock.
    CycleRefused when the batch does not fit."""
    cycle = await read_cycle(conn, program, cycle_id, lock=True)
    if cycle is None:  # cycles are never deleted, and a batch names an existing one when it opens
        raise CycleRefused(CYCLE_NOT_FOUND, f"cycle {cycle_id!r} of program {program!r} not found")
    if problem := window_problem(cycle.start_time, cycle.end_time, utcnow()):
        raise CycleRefused(CYCLE_CLOSED, problem, {"cycle": cycle_name(program, cycle_id)})
    if cycle.budgets:
        overrun = await check_budget(conn, cycle, await batch_requested(conn, batch_id))
        if overrun is not None:
            raise over_budget(cycle, overrun)


def holds_beneficiary(cycle: CycleRecord) -> Any:
    """A WHERE clause on payments: the payment still holds its beneficiary in the cycle (an operator retry
    skips failed payments whose beneficiary a later batch took over)."""
    return exists().where(
        cycle_beneficiaries.c.batch_id == payments.c.batch_id,
        cycle_beneficiaries.c.number == payments.c.number,
        cycle_beneficiaries.c.cycle_id == cycle.id,
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite gives naive datetimes back: they were stored in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


__all__ = [
    "CycleExists",
    "CycleRecord",
    "CycleStore",
    "CycleTotals",
    "NewCycle",
    "batch_requested",
    "check_budget",
    "check_cycle_at_finish",
    "claim_beneficiaries",
    "committed_amounts",
    "holds_beneficiary",
    "over_budget",
    "read_cycle",
]
