"""Which bulk transfer carried each idempotency key: a small SQLite file in the sidecar's data dir.

FSPIOP has no look-up by transferId for bulks, only GET /bulkTransfers/{ID}. The sidecar records each
key's bulkTransferId (with the payee FSP, for FSPIOP-Destination, and the quote's condition) and commits
it BEFORE it posts the bulk, so after any crash look_up knows which bulks to ask about. A key with no row
was never posted by this sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rail_sidecars.sdk.statefile import StateFile, rows_in

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    idempotency_key  TEXT NOT NULL,
    bulk_transfer_id TEXT NOT NULL,
    transfer_id      TEXT NOT NULL,
    payee_fsp        TEXT NOT NULL,
    condition        TEXT NOT NULL,
    sent_time        TEXT NOT NULL,
    PRIMARY KEY (idempotency_key, bulk_transfer_id)
) WITHOUT ROWID
"""
# Definite failures the rail reported (quote refused, bulk refused and confirmed by a look-up): look_up
# reports them again when the hub has no transfer for the key, instead of calling the key absent.
_FAILED = """
CREATE TABLE IF NOT EXISTS failed (
    idempotency_key TEXT PRIMARY KEY,
    reason_code     TEXT NOT NULL,
    reason_message  TEXT NOT NULL,
    failed_time     TEXT NOT NULL
) WITHOUT ROWID
"""


@dataclass(frozen=True, slots=True)
class Sent:
    idempotency_key: str
    bulk_transfer_id: str
    transfer_id: str
    payee_fsp: str
    condition: str


class KeyMap:
    def __init__(self, path: str | Path) -> None:
        # synchronous FULL: the row must survive a crash right after the POST.
        self._file = StateFile(path, (_SCHEMA, _FAILED))

    async def record(self, rows: Sequence[Sent]) -> None:
        if rows:
            await self._file.run(self._record, rows)

    def _record(self, rows: Sequence[Sent]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        values = [
            (r.idempotency_key, r.bulk_transfer_id, r.transfer_id, r.payee_fsp, r.condition, now)
            for r in rows
        ]
        with self._file.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO sent VALUES (?, ?, ?, ?, ?, ?)", values)

    async def find(self, keys: Sequence[str]) -> dict[str, list[Sent]]:
        return await self._file.run(self._find, keys)

    def _find(self, keys: Sequence[str]) -> dict[str, list[Sent]]:
        found: dict[str, list[Sent]] = {}
        with self._file.locked() as conn:
            select = "SELECT idempotency_key, bulk_transfer_id, transfer_id, payee_fsp, condition FROM sent"
            for row in rows_in(conn, f"{select} WHERE idempotency_key", _unique(keys), " ORDER BY sent_time"):
                found.setdefault(row[0], []).append(Sent(*row))
        return found

    async def record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None:
        """(key, reason code, reason message) of definite failures, before they are reported."""
        if failures:
            await self._file.run(self._record_failures, failures)

    def _record_failures(self, failures: Sequence[tuple[str, str, str]]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._file.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO failed VALUES (?, ?, ?, ?)", [(*f, now) for f in failures]
            )

    async def failures(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        return await self._file.run(self._failures, keys)

    def _failures(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        with self._file.locked() as conn:
            select = "SELECT idempotency_key, reason_code, reason_message FROM failed WHERE idempotency_key"
            for key, code, message in rows_in(conn, select, _unique(keys)):
                found[key] = (code, message)
        return found

    def close(self) -> None:
        self._file.close()


def _unique(keys: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(keys))
