"""The sidecar's durable record: which key went in which file under which EndToEndId, and what the bank
said about it. A bank file rail has no look-up API, so this SQLite file is what makes look_up possible and
what stops a key from ever going to the bank in two files.

Every key is recorded, in one transaction with its file's row, before the file is delivered. A key's
row for a given attempt never moves to another file. Outcomes are first-definite-wins: a repeated or
stale report never changes one, except that a success can later be marked returned.

One process at a time writes (WAL mode; BEGIN IMMEDIATE serialises writers of several processes on one
host). Calls run in a worker thread so the event loop never waits on fsync.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rail_sidecars.sdk.statefile import StateFile, rows_in

SUCCEEDED = "succeeded"
FAILED = "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    msg_id        TEXT PRIMARY KEY,
    file_name     TEXT NOT NULL,
    transfers     INTEGER NOT NULL,
    ctrl_sum      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    delivered_at  TEXT,
    group_status  TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transfers (
    end_to_end_id   TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    msg_id          TEXT NOT NULL REFERENCES messages (msg_id),
    batch           TEXT NOT NULL,
    payment_number  INTEGER NOT NULL,
    hundredths      INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    outcome         TEXT,               -- NULL while the bank has not decided
    reason_code     TEXT NOT NULL DEFAULT '',
    reason_message  TEXT NOT NULL DEFAULT '',
    rail_reference  TEXT NOT NULL DEFAULT '',
    outcome_at      TEXT,
    answered_at     TEXT,               -- when execute or look_up last handed the outcome to the runner
    returned_at     TEXT,               -- a success the bank later returned
    return_code     TEXT NOT NULL DEFAULT '',
    return_message  TEXT NOT NULL DEFAULT '',
    return_reported INTEGER NOT NULL DEFAULT 0,
    UNIQUE (idempotency_key, attempt)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transfers_by_message ON transfers (msg_id);
CREATE INDEX IF NOT EXISTS transfers_returns ON transfers (returned_at)
    WHERE returned_at IS NOT NULL AND return_reported = 0;
CREATE TABLE IF NOT EXISTS reports (
    name        TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    changes     INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class TransferRow:
    end_to_end_id: str
    idempotency_key: str
    attempt: int
    msg_id: str
    batch: str
    payment_number: int
    hundredths: int
    currency: str
    outcome: str | None
    reason_code: str
    reason_message: str
    rail_reference: str
    returned: bool
    return_code: str
    return_message: str


@dataclass(frozen=True, slots=True)
class NewTransfer:
    end_to_end_id: str
    idempotency_key: str
    attempt: int
    batch: str
    payment_number: int
    hundredths: int
    currency: str


@dataclass(frozen=True, slots=True)
class MessageRow:
    msg_id: str
    file_name: str
    delivered: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """What a report says about one transfer."""

    end_to_end_id: str
    kind: str  # "succeeded", "failed" or "returned"
    reason_code: str = ""
    reason_message: str = ""
    rail_reference: str = ""


_COLUMNS = (
    "end_to_end_id, idempotency_key, attempt, msg_id, batch, payment_number, hundredths, currency, outcome, "
    "reason_code, reason_message, rail_reference, returned_at IS NOT NULL, return_code, return_message"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _row(values: Sequence[Any]) -> TransferRow:
    v = values
    return TransferRow(
        end_to_end_id=v[0],
        idempotency_key=v[1],
        attempt=v[2],
        msg_id=v[3],
        batch=v[4],
        payment_number=v[5],
        hundredths=v[6],
        currency=v[7],
        outcome=v[8],
        reason_code=v[9],
        reason_message=v[10],
        rail_reference=v[11],
        returned=bool(v[12]),
        return_code=v[13],
        return_message=v[14],
    )


class KeyStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = StateFile(path, (_SCHEMA,))
        self._db = self._file.conn

    # Keys and files.

    async def current(self, keys: Sequence[str]) -> dict[str, TransferRow]:
        """The latest attempt of each key that was ever put in a file."""
        return dict(await self._file.read(self._current, list(keys)))

    def _current(self, keys: list[str]) -> dict[str, TransferRow]:
        found: dict[str, TransferRow] = {}
        for values in rows_in(self._db, f"SELECT {_COLUMNS} FROM transfers WHERE idempotency_key", keys):
            row = _row(values)
            if row.idempotency_key not in found or found[row.idempotency_key].attempt < row.attempt:
                found[row.idempotency_key] = row
        return found

    async def record_file(
        self, msg_id: str, file_name: str, ctrl_sum: str, transfers: Sequence[NewTransfer]
    ) -> list[str]:
        """Records a file and its transfers in one transaction. Returns the keys some other caller recorded
        first (then nothing is recorded, and the caller must build its file again without them)."""
        return list(await self._file.write(self._record_file, msg_id, file_name, ctrl_sum, transfers))

    def _record_file(
        self, msg_id: str, file_name: str, ctrl_sum: str, transfers: Sequence[NewTransfer]
    ) -> list[str]:
        select = "SELECT end_to_end_id FROM transfers WHERE end_to_end_id"
        taken = [key for (key,) in rows_in(self._db, select, [t.end_to_end_id for t in transfers])]
        if taken:
            return taken
        self._db.execute(
            "INSERT INTO messages (msg_id, file_name, transfers, ctrl_sum, created_at) VALUES (?, ?, ?, ?, ?)",
            (msg_id, file_name, len(transfers), ctrl_sum, _now()),
        )
        self._db.executemany(
            "INSERT INTO transfers (end_to_end_id, idempotency_key, attempt, msg_id, batch, payment_number, "
            "hundredths, currency) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    t.end_to_end_id,
                    t.idempotency_key,
                    t.attempt,
                    msg_id,
                    t.batch,
                    t.payment_number,
                    t.hundredths,
                    t.currency,
                )
                for t in transfers
            ],
        )
        return []

    async def messages(self, msg_ids: Iterable[str]) -> dict[str, MessageRow]:
        ids = sorted(set(msg_ids))
        return dict(await self._file.read(self._messages, ids))

    def _messages(self, ids: list[str]) -> dict[str, MessageRow]:
        found = {}
        select = "SELECT msg_id, file_name, delivered_at IS NOT NULL FROM messages WHERE msg_id"
        for msg_id, file_name, delivered in rows_in(self._db, select, ids):
            found[msg_id] = MessageRow(msg_id, file_name, bool(delivered))
        return found

    async def has_news(self, msg_id: str) -> bool:
        """Whether the bank has said anything about this file, which proves it was delivered."""
        return bool(
            await self._file.read(
                lambda: self._db.execute(
                    "SELECT group_status != '' OR EXISTS (SELECT 1 FROM transfers WHERE msg_id = ? "
                    "AND outcome IS NOT NULL) FROM messages WHERE msg_id = ?",
                    (msg_id, msg_id),
                ).fetchone()[0]
            )
        )

    async def mark_delivered(self, msg_id: str) -> None:
        await self._file.read(
            self._db.execute,
            "UPDATE messages SET delivered_at = ? WHERE msg_id = ? AND delivered_at IS NULL",
            (_now(), msg_id),
        )

    async def mark_answered(self, end_to_end_ids: Sequence[str]) -> None:
        await self._file.write(self._mark_answered, list(end_to_end_ids))

    def _mark_answered(self, ids: list[str]) -> None:
        now = _now()
        self._db.executemany(
            "UPDATE transfers SET answered_at = ? WHERE end_to_end_id = ?", [(now, i) for i in ids]
        )

    # Reports.

    async def ingested(self) -> set[str]:
        return set(
            await self._file.read(lambda: [n for (n,) in self._db.execute("SELECT name FROM reports")])
        )

    async def msg_ids_starting(self, prefix: str) -> list[str]:
        """The MsgIds of the files whose id starts with `prefix` (a PmtInfId keeps 31 characters of it)."""

        def run() -> list[str]:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._db.execute(
                "SELECT msg_id FROM messages WHERE msg_id LIKE ? ESCAPE '\\'", (escaped + "%",)
            ).fetchall()
            return [r[0] for r in rows]

        return list(await self._file.read(run))

    async def end_to_end_ids_of(self, msg_id: str) -> list[str]:
        return list(
            await self._file.read(
                lambda: [
                    i
                    for (i,) in self._db.execute(
                        "SELECT end_to_end_id FROM transfers WHERE msg_id = ?", (msg_id,)
                    )
                ]
            )
        )

    async def apply(
        self, report_name: str, kind: str, decisions: Sequence[Decision], group_status: tuple[str, str] | None
    ) -> int:
        """Applies a report's decisions and remembers the report, in one transaction. Returns how many
        transfers changed. group_status: (msg_id, status) to keep for operators."""
        return int(await self._file.write(self._apply, report_name, kind, decisions, group_status))

    def _apply(
        self, report_name: str, kind: str, decisions: Sequence[Decision], group_status: tuple[str, str] | None
    ) -> int:
        now = _now()
        changed = 0
        for d in decisions:
            if d.kind in (SUCCEEDED, FAILED):
                cursor = self._db.execute(
                    "UPDATE transfers SET outcome = ?, reason_code = ?, reason_message = ?, rail_reference = ?, "
                    "outcome_at = ? WHERE end_to_end_id = ? AND outcome IS NULL",
                    (d.kind, d.reason_code, d.reason_message, d.rail_reference, now, d.end_to_end_id),
                )
                changed += cursor.rowcount
                if d.kind == FAILED and cursor.rowcount == 0:
                    # A rejection of a transfer already reported paid is how some banks report a return.
                    cursor = self._db.execute(
                        "UPDATE transfers SET returned_at = ?, return_code = ?, return_message = ? "
                        "WHERE end_to_end_id = ? AND outcome = ? AND returned_at IS NULL",
                        (now, d.reason_code, d.reason_message, d.end_to_end_id, SUCCEEDED),
                    )
                    changed += cursor.rowcount
            else:  # returned: the transfer was paid (a return proves it), then came back
                cursor = self._db.execute(
                    "UPDATE transfers SET outcome = ?, rail_reference = ?, outcome_at = ? "
                    "WHERE end_to_end_id = ? AND outcome IS NULL",
                    (SUCCEEDED, d.rail_reference, now, d.end_to_end_id),
                )
                changed += cursor.rowcount
                cursor = self._db.execute(
                    "UPDATE transfers SET returned_at = ?, return_code = ?, return_message = ? "
                    "WHERE end_to_end_id = ? AND outcome = ? AND returned_at IS NULL",
                    (now, d.reason_code, d.reason_message, d.end_to_end_id, SUCCEEDED),
                )
                changed += cursor.rowcount
        if group_status is not None:
            self._db.execute(
                "UPDATE messages SET group_status = ? WHERE msg_id = ?", (group_status[1], group_status[0])
            )
        self._db.execute(
            "INSERT INTO reports (name, kind, ingested_at, changes) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (report_name, kind, now, changed),
        )
        return changed

    async def rows_by_end_to_end(self, ids: Sequence[str]) -> dict[str, TransferRow]:
        return dict(await self._file.read(self._by_end_to_end, list(ids)))

    def _by_end_to_end(self, ids: list[str]) -> dict[str, TransferRow]:
        found = {}
        for values in rows_in(self._db, f"SELECT {_COLUMNS} FROM transfers WHERE end_to_end_id", ids):
            row = _row(values)
            found[row.end_to_end_id] = row
        return found

    # Returns to report.

    async def unreported_returns(self, answered_before: str, limit: int = 100) -> list[TransferRow]:
        """Returned transfers whose success the runner was handed before `answered_before` (ISO time)."""
        return list(
            await self._file.read(
                lambda: [
                    _row(v)
                    for v in self._db.execute(
                        f"SELECT {_COLUMNS} FROM transfers WHERE returned_at IS NOT NULL AND return_reported = 0 "
                        "AND answered_at IS NOT NULL AND answered_at <= ? ORDER BY returned_at LIMIT ?",
                        (answered_before, limit),
                    )
                ]
            )
        )

    async def mark_return_reported(self, end_to_end_id: str) -> None:
        await self._file.read(
            self._db.execute,
            "UPDATE transfers SET return_reported = 1 WHERE end_to_end_id = ?",
            (end_to_end_id,),
        )

    async def close(self) -> None:
        await self._file.aclose()
