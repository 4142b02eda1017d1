"""The audit trail: who changed what, when, appended in the same transaction as the change itself.

Every event's hash covers its fields and the previous event's hash, so changing or deleting an event breaks
the chain from there on (`verify`). Appends are serialised (an advisory lock on PostgreSQL; SQLite has one
writer), and each is the last statement of its transaction, so the lock is held only until the commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from gpo_server.storage.tables import audit_events

GENESIS = "0" * 64
_LOCK = 0x6770_6F61_7564_6974  # "gpoaudit": one PostgreSQL advisory lock for the trail's end


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One state-changing call, as its handler describes it."""

    action: str  # e.g. "batch.upload", "batch.cancel", "batch.retry", "rail.report", "g2p.disburse"
    subject: str
    caller_kind: str  # "program", "operator", "sidecar"
    certificate_subject: str = ""
    batch_uid: str = ""
    payment_count: int = 0
    request_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    checked: int
    first_broken_id: int = 0  # 0: intact
    problem: str = ""


def event_hash(previous_hash: str, create_time: dt.datetime, event: AuditEvent) -> str:
    """SHA-256 over the event's fields in a fixed order, and the hash before it."""
    fields = [
        previous_hash,
        _utc(create_time).isoformat(timespec="microseconds"),
        event.action,
        event.subject,
        event.caller_kind,
        event.certificate_subject,
        event.batch_uid,
        event.payment_count,
        event.request_id,
        _detail(event.detail),
    ]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


async def append(conn: AsyncConnection, event: AuditEvent, *, is_postgres: bool) -> None:
    """Adds `event` at the end of the trail, inside the caller's transaction (call it last)."""
    if is_postgres:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    last = (
        await conn.execute(select(audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1))
    ).scalar_one_or_none()
    previous = last or GENESIS
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        insert(audit_events).values(
            create_time=now,
            action=event.action,
            subject=event.subject[:256],
            caller_kind=event.caller_kind,
            certificate_subject=event.certificate_subject[:256],
            batch_uid=event.batch_uid,
            payment_count=event.payment_count,
            request_id=event.request_id[:256],
            detail=_detail(event.detail),
            previous_hash=previous,
            hash=event_hash(previous, now, _stored(event)),
        )
    )


def check(rows: list[Row[Any]], previous_hash: str = GENESIS) -> ChainCheck:
    """Recomputes the chain over rows in id order, starting after `previous_hash`."""
    for count, row in enumerate(rows):
        if row.previous_hash != previous_hash:
            return ChainCheck(count, int(row.id), "previous_hash does not name the event before it")
        if row.hash != event_hash(row.previous_hash, row.create_time, _from_row(row)):
            return ChainCheck(count, int(row.id), "the event's fields do not match its hash")
        previous_hash = row.hash
    return ChainCheck(len(rows))


def _from_row(row: Row[Any]) -> AuditEvent:
    return AuditEvent(
        row.action,
        row.subject,
        row.caller_kind,
        row.certificate_subject,
        row.batch_uid,
        int(row.payment_count),
        row.request_id,
        json.loads(row.detail),
    )


def _stored(event: AuditEvent) -> AuditEvent:
    """The event as it is stored (bounded texts), so the hash can be recomputed from the row."""
    return AuditEvent(
        event.action,
        event.subject[:256],
        event.caller_kind,
        event.certificate_subject[:256],
        event.batch_uid,
        event.payment_count,
        event.request_id[:256],
        event.detail,
    )


def _detail(detail: Mapping[str, Any]) -> str:
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; GPO stores UTC only."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
