"""The Store's part for maker-checker approval (docs/TREASURY.md): programs' policies, approvers' decisions,
and the release of an approved batch.

A decision is one transaction under the batch's decision lock (a transaction-scoped advisory lock on
PostgreSQL, SQLite's one writer): concurrent approvers of one batch decide one after another, so each
counts the approvals committed before it and exactly one of them sees the last required one. The lock is
not the batch row's, so a rejection takes rows in the order every cancel does (outbox, payments, batch)
and never deadlocks with a concurrent cancel or settlement. (batch_id, approver) is the primary key of the
decisions, so the same approver never counts twice. The release is a conditional UPDATE from
AWAITING_APPROVAL, by `release_batch` (storage/funds.py), the one way out of a gate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.domain.approval import APPROVED, REJECTED, ApprovalPolicy
from gpo_server.domain.states import BatchState
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.funds import release_batch
from gpo_server.storage.records import ApprovalRecord, BatchRecord
from gpo_server.storage.sql import (
    S,
    StorePart,
    cancel_in,
    hold_sqlite_writer,
    utcnow,
)
from gpo_server.storage.tables import approval_policies, audit_events, batch_approvals, batches, payments

_DECISIONS = 0x6770_6F61  # "gpoa": the advisory lock space of approval decisions, keyed by batch id


class ApprovalRefused(Exception):
    """A decision the rules refuse: `reason` is the API's error reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


NOT_AWAITING = "BATCH_NOT_AWAITING_APPROVAL"
UPLOADER = "UPLOADER_MAY_NOT_APPROVE"
ALREADY_DECIDED = "APPROVER_ALREADY_DECIDED"


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    state: BatchState  # the batch's state after the decision
    approvals: int  # approvals counted so far
    released: bool  # this decision released the batch (the relay should be woken)
    repeated: bool = False  # the same request was decided before: nothing changed


class ApprovalStore(StorePart):
    """Approval policies and decisions."""

    async def get_approval_policy(self, program: str) -> ApprovalPolicy | None:
        async with self.engine.connect() as conn:
            return await read_policy(conn, program)

    async def set_approval_policy(self, policy: ApprovalPolicy, audit: AuditEvent) -> ApprovalPolicy:
        """Creates or replaces the program's policy. Batches already waiting keep the count they were given."""
        now = utcnow()
        values = {
            "amount_thresholds": json.dumps(dict(sorted(policy.amount_thresholds.items()))),
            "count_threshold": policy.count_threshold,
            "required_approvals": policy.required_approvals,
            "update_time": now,
        }
        for attempt in range(2):
            try:
                async with self.engine.begin() as conn:
                    changed = await conn.execute(
                        update(approval_policies)
                        .where(approval_policies.c.program == policy.program)
                        .values(**values)
                    )
                    if not changed.rowcount:
                        await conn.execute(insert(approval_policies).values(program=policy.program, **values))
                    await self._audit(conn, audit)
                return replace(policy, update_time=now)
            except IntegrityError:
                if attempt:  # a concurrent first write of the same program took the key: update it now
                    raise
        raise AssertionError("unreachable")

    async def approvals_of(self, batch_ids: Sequence[int]) -> dict[int, list[ApprovalRecord]]:
        """Each batch's decisions, oldest first: one statement for a page of batches."""
        if not batch_ids:
            return {}
        found: dict[int, list[ApprovalRecord]] = {i: [] for i in batch_ids}
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(batch_approvals)
                .where(batch_approvals.c.batch_id.in_(list(batch_ids)))
                .order_by(
                    batch_approvals.c.batch_id, batch_approvals.c.create_time, batch_approvals.c.approver
                )
            )
            for row in rows:
                found[int(row.batch_id)].append(ApprovalRecord.from_row(row))
        return found

    async def decide(
        self,
        batch_id: int,
        *,
        approver: str,
        decision: str,
        reason: str,
        request_id: str,
        audit: AuditEvent,
    ) -> DecisionOutcome:
        """Records `approver`'s decision on a batch AWAITING_APPROVAL, and its consequence in the same
        transaction: the last required approval releases the batch, a rejection cancels it. Raises
        ApprovalRefused: the batch is not waiting, the approver uploaded it, or already decided on it (the
        same request_id deciding the same again is answered as before, changing nothing)."""
        assert decision in (APPROVED, REJECTED)
        now = utcnow()
        async with self.engine.begin() as conn:
            if self.is_postgres:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:space, :key)"),
                    {"space": _DECISIONS, "key": batch_id & 0x7FFF_FFFF},
                )
            else:
                await hold_sqlite_writer(conn, batch_id)
            batch = BatchRecord.from_row(
                (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()
            )
            previous = (
                await conn.execute(
                    select(batch_approvals).where(
                        batch_approvals.c.batch_id == batch_id, batch_approvals.c.approver == approver
                    )
                )
            ).first()
            if previous is not None:
                if request_id and previous.request_id == request_id and previous.decision == decision:
                    return DecisionOutcome(batch.state, await _approvals(conn, batch_id), False, True)
                raise ApprovalRefused(
                    ALREADY_DECIDED,
                    f"{approver!r} already {previous.decision} this batch; each approver decides once",
                )
            if batch.state is not BatchState.AWAITING_APPROVAL:
                raise ApprovalRefused(
                    NOT_AWAITING,
                    f"the batch is {batch.state.value}, not awaiting approval: nothing to decide",
                )
            if decision == APPROVED and approver in await _uploaders(conn, batch):
                raise ApprovalRefused(UPLOADER, "the batch's uploader may not approve it (maker-checker)")
            await conn.execute(
                insert(batch_approvals).values(
                    batch_id=batch_id,
                    approver=approver,
                    decision=decision,
                    reason=reason,
                    request_id=request_id,
                    create_time=now,
                )
            )
            count = await _approvals(conn, batch_id)
            if decision == REJECTED:
                cancelled = await cancel_in(conn, batch_id, now, "batch rejected by an approver")
                await self._audit(
                    conn,
                    replace(
                        audit,
                        batch_uid=batch.uid,
                        payment_count=cancelled.payments,
                        detail={**audit.detail, "reason": reason},
                    ),
                )
                return DecisionOutcome(BatchState.CANCELLED, count, False)
            approved = replace(
                audit,
                batch_uid=batch.uid,
                detail={**audit.detail, "approvals": count, "required_approvals": batch.required_approvals},
            )
            # Every change first, the audit events last: the trail's lock is held only until the commit.
            if count < batch.required_approvals:
                # The batch changed (its approvals): watchers see it at once.
                await conn.execute(update(batches).where(batches.c.id == batch_id).values(update_time=now))
                await self._audit(conn, approved)
                return DecisionOutcome(batch.state, count, False)
            state = await release(conn, batch, self.funds_rails)
            await self._audit(conn, approved)
            if state is BatchState.CANCELLED:  # cancelled meanwhile: nothing to release
                return DecisionOutcome(state, count, False)
            await self._audit(
                conn,
                replace(
                    audit,
                    action="batch.release",
                    batch_uid=batch.uid,
                    payment_count=batch.payment_count,
                    detail={
                        "from": BatchState.AWAITING_APPROVAL.value,
                        "to": state.value,
                        "approvals": count,
                    },
                ),
            )
            return DecisionOutcome(state, count, True)


async def release(conn: AsyncConnection, batch: BatchRecord, funds_rails: frozenset[str]) -> BatchState:
    """The approval gate's release, inside the deciding transaction: `release_batch` (the one way out of a
    gate) moves the batch from AWAITING_APPROVAL to AWAITING_FUNDS or PROCESSING (COMPLETED at once when
    nothing is left to pay). The caller wakes the relay once it committed. A batch cancelled meanwhile
    stays CANCELLED. Returns the batch's state after."""
    await release_batch(conn, batch.id, batch.uid, BatchState.AWAITING_APPROVAL, funds_rails, utcnow())
    return BatchState(
        (await conn.execute(select(batches.c.state).where(batches.c.id == batch.id))).scalar_one()
    )


async def read_policy(conn: AsyncConnection, program: str) -> ApprovalPolicy | None:
    row = (
        await conn.execute(select(approval_policies).where(approval_policies.c.program == program))
    ).first()
    if row is None:
        return None
    return ApprovalPolicy(
        program=program,
        amount_thresholds={str(c): int(h) for c, h in json.loads(row.amount_thresholds).items()},
        count_threshold=int(row.count_threshold),
        required_approvals=int(row.required_approvals),
        update_time=row.update_time,
    )


async def accepted_totals(conn: AsyncConnection, batch_id: int) -> tuple[dict[str, int], int]:
    """(hundredths per currency, count) of a batch's ACCEPTED payments: one grouped statement."""
    rows = await conn.execute(
        select(payments.c.currency_code, func.sum(payments.c.amount_hundredths), func.count())
        .where(payments.c.batch_id == batch_id, payments.c.status == S.ACCEPTED.value)
        .group_by(payments.c.currency_code)
    )
    totals, count = {}, 0
    for currency, hundredths, n in rows:
        totals[str(currency)] = int(hundredths or 0)
        count += int(n)
    return totals, count


# Audit actions of callers who put payments into a batch: each of them is its maker.
UPLOAD_ACTIONS = ("batch.open", "batch.upload", "g2p.disburse", "g2p.disburse.upload")


async def _uploaders(conn: AsyncConnection, batch: BatchRecord) -> set[str]:
    """The subjects that opened or finished the batch's upload: the one recorded on the batch, and any
    other the audit trail names (a resumed upload's caller), read by the trail's batch index."""
    rows = await conn.execute(
        select(audit_events.c.subject)
        .where(audit_events.c.batch_uid == batch.uid, audit_events.c.action.in_(UPLOAD_ACTIONS))
        .distinct()
    )
    return {batch.uploader, *(str(subject) for (subject,) in rows)} - {""}


async def _approvals(conn: AsyncConnection, batch_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count()).where(
                    batch_approvals.c.batch_id == batch_id, batch_approvals.c.decision == APPROVED
                )
            )
        ).scalar_one()
    )
