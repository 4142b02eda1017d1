"""The SQL of ListRailStats: per rail, payments settled in a recent window and payments still in flight.

`payments.update_time` has no index (no index names a column the dispatch steps rewrite, so updates stay
HOT; docs/ARCHITECTURE.md), so the read is confined to the batches that can hold such payments: those in
progress, those updated in the window (a batch's update_time moves when it completes), and cancelled ones
whose claimed payments are still finishing. Each batch's payments are then read by its primary key range.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gpo_server.domain.states import BATCH_FINAL, BatchState, PaymentStatus
from gpo_server.storage.tables import batches, payments

S = PaymentStatus
_SETTLED = (S.SUCCEEDED.value, S.FAILED.value)
_IN_FLIGHT = (S.ACCEPTED.value, S.QUEUED.value, S.SENT.value)


@dataclass(slots=True)
class RailActivity:
    rail: str
    succeeded: int = 0
    failed: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    waiting: int = 0  # ACCEPTED or QUEUED
    sent: int = 0


async def read_rail_activity(engine: AsyncEngine, since: dt.datetime) -> list[RailActivity]:
    """Every rail with payments settled since `since` or still in flight, by rail name."""
    active_batches = select(batches.c.id).where(
        or_(
            batches.c.state.in_([s.value for s in BatchState if s not in BATCH_FINAL]),
            batches.c.update_time >= since,
            and_(batches.c.state == BatchState.CANCELLED.value, batches.c.unfinished_count > 0),
        )
    )
    settled_recently = and_(payments.c.status.in_(_SETTLED), payments.c.update_time >= since)
    query = (
        select(payments.c.rail, payments.c.status, payments.c.reason_code, func.count())
        .where(
            payments.c.batch_id.in_(active_batches),
            payments.c.rail.is_not(None),
            or_(settled_recently, payments.c.status.in_(_IN_FLIGHT)),
        )
        .group_by(payments.c.rail, payments.c.status, payments.c.reason_code)
    )
    by_rail: dict[str, RailActivity] = {}
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    for rail, status, reason_code, count in rows:
        activity = by_rail.setdefault(rail, RailActivity(rail))
        if status == S.SUCCEEDED.value:
            activity.succeeded += count
        elif status == S.FAILED.value:
            activity.failed += count
            activity.failure_reasons[reason_code] = activity.failure_reasons.get(reason_code, 0) + count
        elif status == S.SENT.value:
            activity.sent += count
        else:
            activity.waiting += count
    return [by_rail[name] for name in sorted(by_rail)]
