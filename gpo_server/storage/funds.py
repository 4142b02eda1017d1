"""The Store's part for funds check and block (docs/TREASURY.md): a batch leaving its gates, and the funds
blocks a rail's sidecar places and releases with the sponsor bank.

GPO never calls a sidecar. A batch whose accepted payments go to a rail with funds control waits in
AWAITING_FUNDS with one funds block per (rail, payer account, currency) in state REQUESTED; the rail's
sidecar claims the requests (ClaimFundsBlocks), blocks the amounts at the bank under each block_id (the
bank refuses a second block under one id) and reports (ReportFundsBlocks). Once every block of the batch
is BLOCKED, the batch moves to PROCESSING in the same transaction, and the relay publishes its work. A
cancel asks the sidecar to release the blocks, the same way.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.states import (
    BatchState,
    FundsBlockState,
    PaymentStatus,
    batch_sources_of,
    funds_sources_of,
    next_state_after_gates,
)
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.sql import StorePart, count_unfinished, utcnow
from gpo_server.storage.tables import batches, funds_blocks, payments

F = FundsBlockState

INSUFFICIENT_REASON = "funds.insufficient"


def block_id_of(batch_uid: str, rail: str, payer_fa: str, currency_code: str) -> str:
    """The block's id, derived from what it blocks: the same on every request, so the bank can refuse a
    second block under it."""
    return str(uuid.uuid5(uuid.UUID(batch_uid), f"funds/{rail}/{payer_fa}/{currency_code}"))


@dataclass(frozen=True, slots=True)
class FundsBlockRecord:
    block_id: str
    batch_uid: str
    rail: str
    currency_code: str
    payer_fa: str
    amount_hundredths: int
    state: FundsBlockState
    reason_code: str
    reason_message: str
    bank_reference: str
    attempts: int
    update_time: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> FundsBlockRecord:
        m = row._mapping
        return cls(
            block_id=m["block_id"],
            batch_uid=m["uid"],
            rail=m["rail"],
            currency_code=m["currency_code"],
            payer_fa=m["payer_fa"],
            amount_hundredths=int(m["amount_hundredths"]),
            state=FundsBlockState(m["state"]),
            reason_code=m["reason_code"],
            reason_message=m["reason_message"],
            bank_reference=m["bank_reference"],
            attempts=int(m["attempts"]),
            update_time=m["update_time"],
        )


@dataclass(frozen=True, slots=True)
class FundsReport:
    """What the bank answered for one block: BLOCKED, INSUFFICIENT or RELEASED."""

    block_id: str
    outcome: FundsBlockState
    reason_code: str = ""
    reason_message: str = ""
    bank_reference: str = ""


_COLUMNS = (
    funds_blocks.c.block_id,
    batches.c.uid,
    funds_blocks.c.rail,
    funds_blocks.c.currency_code,
    funds_blocks.c.payer_fa,
    funds_blocks.c.amount_hundredths,
    funds_blocks.c.state,
    funds_blocks.c.reason_code,
    funds_blocks.c.reason_message,
    funds_blocks.c.bank_reference,
    funds_blocks.c.attempts,
    funds_blocks.c.update_time,
)


async def release_batch(
    conn: AsyncConnection,
    batch_id: int,
    batch_uid: str,
    source: BatchState,
    funds_rails: frozenset[str],
    now: dt.datetime,
) -> BatchState | None:
    """Moves a batch from the gate `source` (UPLOADING at the end of its upload, or an approval gate) to
    the next state, in the caller's transaction: AWAITING_FUNDS with its funds blocks requested when some
    accepted payment goes to a rail in `funds_rails`, else PROCESSING (COMPLETED at once when nothing is
    left to pay). The one way to PROCESSING from a gate. None when the batch was not in `source`."""
    needed: list[Any] = []
    if funds_rails:
        needed = list(
            (
                await conn.execute(
                    select(
                        payments.c.rail,
                        payments.c.payer_fa,
                        payments.c.currency_code,
                        func.sum(payments.c.amount_hundredths),
                    )
                    .where(
                        payments.c.batch_id == batch_id,
                        payments.c.status == PaymentStatus.ACCEPTED.value,
                        payments.c.rail.in_(sorted(funds_rails)),
                    )
                    .group_by(payments.c.rail, payments.c.payer_fa, payments.c.currency_code)
                    .order_by(payments.c.rail, payments.c.payer_fa, payments.c.currency_code)
                )
            ).all()
        )
    target = next_state_after_gates(needs_funds=bool(needed))
    assert source in batch_sources_of(target), f"{source} -> {target} is not a batch transition"
    moved = await conn.execute(
        update(batches)
        .where(batches.c.id == batch_id, batches.c.state == source.value)
        .values(state=target.value, update_time=now)
    )
    if moved.rowcount != 1:
        return None
    if needed:
        await conn.execute(
            insert(funds_blocks),
            [
                {
                    "block_id": block_id_of(batch_uid, rail, payer_fa, currency),
                    "batch_id": batch_id,
                    "rail": rail,
                    "currency_code": currency,
                    "payer_fa": payer_fa,
                    "amount_hundredths": int(total),
                    "state": F.REQUESTED.value,
                    "create_time": now,
                    "update_time": now,
                }
                for rail, payer_fa, currency, total in needed
            ],
        )
    else:
        await count_unfinished(conn, batch_id)
    return target


async def release_funds_of(conn: AsyncConnection, batch_id: int, now: dt.datetime) -> int:
    """A cancelled batch's blocks are to be released by their rail's sidecar; how many."""
    result = await conn.execute(
        update(funds_blocks)
        .where(
            funds_blocks.c.batch_id == batch_id,
            funds_blocks.c.state.in_([s.value for s in funds_sources_of(F.RELEASING)]),
        )
        .values(state=F.RELEASING.value, lease_owner=None, lease_expire_time=None, update_time=now)
    )
    return max(result.rowcount, 0)


class FundsStore(StorePart):
    """Funds blocks: the sidecars' claims and reports, and what GetBatch shows of them."""

    async def funds_blocks_of(self, batch_id: int) -> list[FundsBlockRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(*_COLUMNS)
                .join(batches, batches.c.id == funds_blocks.c.batch_id)
                .where(funds_blocks.c.batch_id == batch_id)
                .order_by(funds_blocks.c.id)
            )
            return [FundsBlockRecord.from_row(r) for r in rows]

    async def claim_funds_blocks(
        self, rail: str, owner: str, lease_s: float, limit: int, recheck_after_s: float
    ) -> list[FundsBlockRecord]:
        """Leases up to `limit` of the rail's pending requests to `owner`: blocks to place (REQUESTED, and
        INSUFFICIENT ones not checked for `recheck_after_s`) and blocks to release (RELEASING), whose
        lease is free. Each claim counts an attempt."""
        now = utcnow()
        free = or_(funds_blocks.c.lease_expire_time.is_(None), funds_blocks.c.lease_expire_time < now)
        due = or_(
            funds_blocks.c.state.in_([F.REQUESTED.value, F.RELEASING.value]),
            and_(
                funds_blocks.c.state == F.INSUFFICIENT.value,
                funds_blocks.c.update_time < now - dt.timedelta(seconds=recheck_after_s),
            ),
        )
        query = (
            select(funds_blocks.c.id)
            .where(funds_blocks.c.rail == rail, due, free)
            .order_by(funds_blocks.c.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        async with self.engine.begin() as conn:
            ids = [int(r[0]) for r in await conn.execute(query)]
            if not ids:
                return []
            await conn.execute(
                update(funds_blocks)
                .where(funds_blocks.c.id.in_(ids), free)
                .values(
                    lease_owner=owner,
                    lease_expire_time=now + dt.timedelta(seconds=lease_s),
                    attempts=funds_blocks.c.attempts + 1,
                )
            )
            rows = await conn.execute(
                select(*_COLUMNS)
                .join(batches, batches.c.id == funds_blocks.c.batch_id)
                .where(funds_blocks.c.id.in_(ids), funds_blocks.c.lease_owner == owner)
                .order_by(funds_blocks.c.id)
            )
            return [FundsBlockRecord.from_row(r) for r in rows]

    @staticmethod
    async def _apply_funds_report(
        conn: AsyncConnection, rail: str, report: FundsReport, sources: Sequence[str], now: dt.datetime
    ) -> list[int]:
        """The batch ids of the blocks the report moved (one at most): from `sources` only."""
        changed = await conn.execute(
            update(funds_blocks)
            .where(
                funds_blocks.c.block_id == report.block_id,
                funds_blocks.c.rail == rail,
                funds_blocks.c.state.in_(sources),
            )
            .values(
                state=report.outcome.value,
                # The operator's reason for a batch held for its funds; the bank's own text beside it.
                reason_code=INSUFFICIENT_REASON if report.outcome is F.INSUFFICIENT else "",
                reason_message=report.reason_message[:1024],
                bank_reference=report.bank_reference[:256] or funds_blocks.c.bank_reference,
                lease_owner=None,
                lease_expire_time=None,
                update_time=now,
            )
            .returning(funds_blocks.c.batch_id)
        )
        return [int(row[0]) for row in changed]

    async def report_funds_blocks(
        self, rail: str, reports: Sequence[FundsReport], audit: AuditEvent
    ) -> tuple[int, list[str]]:
        """Stores what the bank answered, in one transaction: a block moves only from a state it may
        leave for the outcome (a repeated or stale report changes nothing). A batch whose blocks are all
        BLOCKED moves from AWAITING_FUNDS to PROCESSING; one with an INSUFFICIENT block stays, with the
        reason shown. Returns (blocks changed, batches released to PROCESSING)."""
        now = utcnow()
        applied = 0
        touched: dict[int, str] = {}
        insufficient: dict[int, list[str]] = {}
        async with self.engine.begin() as conn:
            for report in reports:
                sources = [s.value for s in funds_sources_of(report.outcome)]
                changed = await self._apply_funds_report(conn, rail, report, sources, now)
                if not changed and report.outcome is F.INSUFFICIENT:
                    # A re-check that still finds too little: the block stays held, with the bank's new
                    # words and time; not a change of state, so not counted or audited again.
                    await self._apply_funds_report(conn, rail, report, [F.INSUFFICIENT.value], now)
                for batch_id in changed:
                    applied += 1
                    touched[batch_id] = report.outcome.value
                    if report.outcome is F.INSUFFICIENT:
                        insufficient.setdefault(batch_id, []).append(report.block_id)
            released: list[str] = []
            for batch_id in sorted(touched):
                states = {
                    r[0]
                    for r in await conn.execute(
                        select(funds_blocks.c.state).where(funds_blocks.c.batch_id == batch_id).distinct()
                    )
                }
                uid = (await conn.execute(select(batches.c.uid).where(batches.c.id == batch_id))).scalar_one()
                if states == {F.BLOCKED.value}:
                    moved = await conn.execute(
                        update(batches)
                        .where(
                            batches.c.id == batch_id,
                            batches.c.state == BatchState.AWAITING_FUNDS.value,
                        )
                        .values(state=BatchState.PROCESSING.value, update_time=now)
                    )
                    if moved.rowcount == 1:
                        await count_unfinished(conn, batch_id)
                        released.append(uid)
                        await self._audit(conn, replace(audit, action="batch.funds_blocked", batch_uid=uid))
                if batch_id in insufficient:
                    await conn.execute(
                        update(batches).where(batches.c.id == batch_id).values(update_time=now)
                    )
                    await self._audit(
                        conn,
                        replace(
                            audit,
                            action="batch.funds_insufficient",
                            batch_uid=uid,
                            detail={"blocks": insufficient[batch_id], "reason": INSUFFICIENT_REASON},
                        ),
                    )
                elif touched[batch_id] == F.RELEASED.value:
                    await self._audit(conn, replace(audit, action="batch.funds_released", batch_uid=uid))
        return applied, released
