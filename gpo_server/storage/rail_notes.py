"""Every SQL statement of rail notes: what a rail sidecar must remember across attempts, recorded through
RailService before the rail is called (issue 19, item 1), so that no sidecar keeps state of its own.

Notes are write-once: (rail, tag, idempotency_key) is unique and recording it again keeps the first body,
so a sidecar that crashed after recording records again harmlessly. One call is one transaction (and one
audit event), whatever the number of notes: a chunk's notes never cost a statement per payment beyond the
multi-row INSERT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from gpo_server.storage import audit as audit_trail
from gpo_server.storage.audit import AuditEvent
from gpo_server.storage.store import utcnow
from gpo_server.storage.tables import rail_notes

# Rows per INSERT statement: 5 parameters each stays under SQLite's 32,766 and PostgreSQL's 65,535.
_ROWS_PER_INSERT = 1000
# Keys or tags per SELECT, for the same reason.
_NAMES_PER_SELECT = 5000


@dataclass(frozen=True, slots=True)
class StoredNote:
    id: int
    tag: str
    idempotency_key: str
    body: bytes
    create_time: dt.datetime


@dataclass(frozen=True, slots=True)
class NoteInput:
    tag: str
    idempotency_key: str
    body: bytes


class RailNotesStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    async def record(self, rail: str, notes: Sequence[NoteInput], audit: AuditEvent | None = None) -> int:
        """Stores `notes` of `rail` in one transaction with `audit`; a note already stored keeps its first
        body. Returns how many were new."""
        dialect = postgresql if self.is_postgres else sqlite
        now = utcnow()
        recorded = 0
        async with self.engine.begin() as conn:
            for start in range(0, len(notes), _ROWS_PER_INSERT):
                rows = [
                    {
                        "rail": rail,
                        "tag": n.tag,
                        "idempotency_key": n.idempotency_key,
                        "body": n.body,
                        "create_time": now,
                    }
                    for n in notes[start : start + _ROWS_PER_INSERT]
                ]
                statement = (
                    dialect.insert(rail_notes)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["rail", "tag", "idempotency_key"])
                    .returning(rail_notes.c.id)
                )
                recorded += len((await conn.execute(statement)).all())
            if audit is not None:
                await audit_trail.append(conn, audit, is_postgres=self.is_postgres)
        return recorded

    async def find(
        self,
        rail: str,
        *,
        idempotency_keys: Sequence[str] = (),
        tags: Sequence[str] = (),
        after_id: int = 0,
        limit: int = 10_000,
        max_body_bytes: int = 8 * 1024 * 1024,
    ) -> tuple[list[StoredNote], bool]:
        """`rail`'s notes about any of `idempotency_keys` or with any of `tags`, by id, after `after_id`:
        at most `limit`, stopping once `max_body_bytes` of bodies are read. Returns (notes, more)."""
        keys, names = sorted(set(idempotency_keys)), sorted(set(tags))
        found: dict[int, StoredNote] = {}
        async with self.engine.connect() as conn:
            # Each part is read up to limit + 1 rows from after_id, so the merged first `limit` are exact.
            for column, values in ((rail_notes.c.idempotency_key, keys), (rail_notes.c.tag, names)):
                for start in range(0, len(values), _NAMES_PER_SELECT):
                    part = values[start : start + _NAMES_PER_SELECT]
                    rows = await conn.execute(
                        select(
                            rail_notes.c.id,
                            rail_notes.c.tag,
                            rail_notes.c.idempotency_key,
                            rail_notes.c.body,
                            rail_notes.c.create_time,
                        )
                        .where(rail_notes.c.rail == rail, rail_notes.c.id > after_id, column.in_(part))
                        .order_by(rail_notes.c.id)
                        .limit(limit + 1)
                    )
                    for row in rows:
                        found[int(row.id)] = StoredNote(
                            int(row.id), row.tag, row.idempotency_key, bytes(row.body), _utc(row.create_time)
                        )
        ordered = [found[i] for i in sorted(found)]
        page: list[StoredNote] = []
        size = 0
        for note in ordered[:limit]:
            if page and size + len(note.body) > max_body_bytes:
                break
            page.append(note)
            size += len(note.body)
        return page, len(page) < len(ordered)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
