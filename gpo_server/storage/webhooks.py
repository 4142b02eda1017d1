"""Every SQL statement of the webhooks on batch callback URIs (gpo_server/webhooks/).

Events are made from what the batches table already keeps (state, unfinished_count) plus one GROUP BY of
the batch's payments when an event is due, so no payment's path gains a statement. Both the producer and
the delivery claim their webhook_batches rows FOR UPDATE SKIP LOCKED, so replicas share the work.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gpo_server.domain.states import BatchState
from gpo_server.storage import audit as audit_trail
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.batches import read_batch_totals
from gpo_server.storage.records import StatusTotal
from gpo_server.storage.sql import utcnow
from gpo_server.storage.tables import batches, webhook_batches, webhook_events


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What an event says, read in the transaction that makes it."""

    event_id: str
    sequence: int
    batch_uid: str
    program: str
    request_id: str
    state: BatchState
    payment_count: int
    unfinished_count: int
    totals: list[StatusTotal]
    occurred_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DueEvent:
    batch_id: int
    batch_uid: str
    sequence: int
    event_id: str
    uri: str
    body: str
    attempts: int  # failed attempts of this event so far


@dataclass(frozen=True, slots=True)
class WebhookStatus:
    last_sequence: int
    delivered_sequence: int
    attempts: int
    failed_time: dt.datetime | None
    last_error: str


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    async def make_events(
        self, progress_every_s: float, render: Callable[[EventFacts], tuple[str, str]], limit: int = 100
    ) -> int:
        """Makes the events now due: one for each batch whose state changed since its last event, and a
        progress event for each whose unfinished count moved, at most one every progress_every_s. A batch
        whose receiver was given up on gets no more. `render` gives (type, JSON body). Returns how many."""
        now = utcnow()
        await self._track_new_batches()
        state_changed = batches.c.state != webhook_batches.c.last_state
        progressed = and_(
            batches.c.unfinished_count != webhook_batches.c.last_unfinished,
            or_(
                webhook_batches.c.last_event_time.is_(None),
                webhook_batches.c.last_event_time <= now - dt.timedelta(seconds=progress_every_s),
            ),
        )
        query = (
            select(webhook_batches.c.batch_id, webhook_batches.c.last_sequence)
            .join(batches, batches.c.id == webhook_batches.c.batch_id)
            .where(webhook_batches.c.failed_time.is_(None), or_(state_changed, progressed))
            .order_by(webhook_batches.c.batch_id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(of=webhook_batches, skip_locked=True)
        made = 0
        async with self.engine.begin() as conn:
            for batch_id, last_sequence in (await conn.execute(query)).all():
                batch = (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()
                facts = EventFacts(
                    event_id=str(uuid.uuid4()),
                    sequence=last_sequence + 1,
                    batch_uid=batch.uid,
                    program=batch.program,
                    request_id=batch.request_id,
                    state=BatchState(batch.state),
                    payment_count=int(batch.payment_count),
                    unfinished_count=int(batch.unfinished_count),
                    totals=await read_batch_totals(conn, batch_id),
                    occurred_at=now,
                )
                kind, body = render(facts)
                await conn.execute(
                    webhook_events.insert().values(
                        batch_id=batch_id,
                        sequence=facts.sequence,
                        event_id=facts.event_id,
                        type=kind,
                        body=body,
                        create_time=now,
                    )
                )
                await conn.execute(
                    update(webhook_batches)
                    .where(webhook_batches.c.batch_id == batch_id)
                    .values(
                        last_sequence=facts.sequence,
                        last_state=batch.state,
                        last_unfinished=batch.unfinished_count,
                        last_event_time=now,
                    )
                )
                made += 1
        return made

    async def _track_new_batches(self) -> None:
        """Starts tracking batches with a callback URI once their upload has ended."""
        new = select(batches.c.id).where(
            batches.c.callback_uri != "",
            batches.c.state != BatchState.UPLOADING.value,
            ~select(webhook_batches.c.batch_id).where(webhook_batches.c.batch_id == batches.c.id).exists(),
        )
        insert: Any = (postgresql if self.is_postgres else sqlite).insert(webhook_batches)
        async with self.engine.begin() as conn:
            await conn.execute(insert.from_select(["batch_id"], new).on_conflict_do_nothing())

    async def claim_due(self, lease_s: float, limit: int = 50) -> list[DueEvent]:
        """Each batch's next undelivered event whose retry time has come, leased for lease_s to this
        caller: one event per batch at a time, so a batch's events go out in sequence."""
        now = utcnow()
        query = (
            select(
                webhook_batches.c.batch_id,
                webhook_batches.c.attempts,
                webhook_events.c.sequence,
                webhook_events.c.event_id,
                webhook_events.c.body,
                batches.c.callback_uri,
                batches.c.uid,
            )
            .join(
                webhook_events,
                and_(
                    webhook_events.c.batch_id == webhook_batches.c.batch_id,
                    webhook_events.c.sequence == webhook_batches.c.delivered_sequence + 1,
                ),
            )
            .join(batches, batches.c.id == webhook_batches.c.batch_id)
            .where(
                webhook_batches.c.failed_time.is_(None),
                or_(
                    webhook_batches.c.next_attempt_time.is_(None), webhook_batches.c.next_attempt_time <= now
                ),
                or_(webhook_batches.c.lease_until.is_(None), webhook_batches.c.lease_until < now),
            )
            .order_by(webhook_events.c.create_time)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(of=webhook_batches, skip_locked=True)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(
                    update(webhook_batches)
                    .where(webhook_batches.c.batch_id.in_([r.batch_id for r in rows]))
                    .values(lease_until=now + dt.timedelta(seconds=lease_s))
                )
        return [
            DueEvent(
                int(r.batch_id), r.uid, int(r.sequence), r.event_id, r.callback_uri, r.body, int(r.attempts)
            )
            for r in rows
        ]

    async def delivered(self, event: DueEvent) -> None:
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(webhook_batches)
                .where(
                    webhook_batches.c.batch_id == event.batch_id,
                    webhook_batches.c.delivered_sequence == event.sequence - 1,
                )
                .values(
                    delivered_sequence=event.sequence,
                    attempts=0,
                    next_attempt_time=None,
                    lease_until=None,
                    last_error="",
                )
            )
            await conn.execute(
                update(webhook_events)
                .where(webhook_events.c.event_id == event.event_id)
                .values(delivered_time=now)
            )

    async def attempt_failed(self, event: DueEvent, error: str, retry_at: dt.datetime | None) -> None:
        """retry_at None: the receiver is given up on, and the batch is marked failed for operators, in
        the audit trail too (`gpo audit`, ListAuditEvents of the batch)."""
        async with self.engine.begin() as conn:
            changed = await conn.execute(
                update(webhook_batches)
                .where(
                    webhook_batches.c.batch_id == event.batch_id,
                    webhook_batches.c.delivered_sequence == event.sequence - 1,
                )
                .values(
                    attempts=event.attempts + 1,
                    next_attempt_time=retry_at,
                    lease_until=None,
                    last_error=error[:500],
                    failed_time=utcnow() if retry_at is None else None,
                )
            )
            if retry_at is None and changed.rowcount:
                abandoned = AuditEvent(
                    action="webhook.abandoned",
                    subject="gpo",
                    caller_kind="system",
                    batch_uid=event.batch_uid,
                    detail={
                        "event_id": event.event_id,
                        "sequence": event.sequence,
                        "last_error": error[:500],
                    },
                )
                await audit_trail.append(conn, abandoned, is_postgres=self.is_postgres)

    async def status(self, batch_uid: str) -> WebhookStatus | None:
        query = (
            select(webhook_batches)
            .join(batches, batches.c.id == webhook_batches.c.batch_id)
            .where(batches.c.uid == batch_uid)
        )
        return await self._status(query)

    async def status_of(self, batch_id: int) -> WebhookStatus | None:
        """The batch's delivery state, for GetBatch; None when it has no callback URI or no event yet."""
        return await self._status(select(webhook_batches).where(webhook_batches.c.batch_id == batch_id))

    async def _status(self, query: Any) -> WebhookStatus | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        failed = row.failed_time
        return WebhookStatus(
            int(row.last_sequence),
            int(row.delivered_sequence),
            int(row.attempts),
            failed.replace(tzinfo=dt.UTC) if failed is not None and failed.tzinfo is None else failed,
            row.last_error,
        )

    async def failing_count(self) -> int:
        """Batches whose receiver was given up on (a gauge of /metrics)."""
        async with self.engine.connect() as conn:
            query = select(func.count()).where(webhook_batches.c.failed_time.is_not(None))
            return int((await conn.execute(query)).scalar_one())
