"""The sidecar's own record of what it sent: idempotency key → batch, in a SQLite file in its data dir.

A key is bound to exactly one batch, and the binding, with the exact request body, is committed BEFORE
the batch is posted. A key is therefore never put into a second batch: a retry (after a timeout, a crash
or a redelivery) re-posts the same body under the same X-CorrelationID, which the provider recognises,
or resumes the batch the provider already has. Final results learned from the provider are cached here.
Several sidecar processes may share the file (WAL, BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from rail_sidecars.rails.base import Outcome, RailResult
from rail_sidecars.sdk.statefile import StateFile, rows_in

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS batches (
        correlation_id        TEXT PRIMARY KEY,   -- X-CorrelationID of the POST
        body                  TEXT NOT NULL,      -- the exact requestBatchTransaction JSON
        size                  INTEGER NOT NULL,
        state                 TEXT NOT NULL,
        batch_id              TEXT,               -- the provider's batchId, once known
        server_correlation_id TEXT,
        error_code            TEXT NOT NULL DEFAULT '',
        error_message         TEXT NOT NULL DEFAULT '',
        in_flight_until       REAL NOT NULL DEFAULT 0,  -- a POST or PATCH may take effect until then
        created               TEXT NOT NULL,
        updated               TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS batch_keys (
        idempotency_key TEXT PRIMARY KEY,
        correlation_id  TEXT NOT NULL REFERENCES batches (correlation_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS batch_keys_by_batch ON batch_keys (correlation_id)",
    # A POST of the batch was attempted (written before it is sent): with a provider that does not
    # deduplicate X-CorrelationID, such a batch is looked up (/responses) before it may be posted again.
    """
    CREATE TABLE IF NOT EXISTS posted (
        correlation_id TEXT PRIMARY KEY,
        first_post     TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS results (
        idempotency_key TEXT PRIMARY KEY,
        outcome         TEXT NOT NULL,
        reason_code     TEXT NOT NULL,
        reason_message  TEXT NOT NULL,
        rail_reference  TEXT NOT NULL
    ) WITHOUT ROWID
    """,
)


class BatchState(StrEnum):
    RECORDED = "recorded"  # bound and stored; the POST may or may not have reached the provider
    SUBMITTED = "submitted"  # the provider acknowledged it (batch id known)
    APPROVED = "approved"  # the approval PATCH was accepted
    COMPLETED = "completed"  # the provider completed it; results collected (and cached)
    FAILED = "failed"  # the provider refused the whole batch: no transaction of it was executed


@dataclass(frozen=True, slots=True)
class BatchRecord:
    correlation_id: str
    body: str
    size: int
    state: BatchState
    batch_id: str | None = None
    server_correlation_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    in_flight_until: float = 0.0  # epoch seconds


@dataclass(frozen=True, slots=True)
class NewBatch:
    correlation_id: str
    body: str
    keys: tuple[str, ...]


class BatchStore:
    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = str(path)
        self._file = StateFile(path, _SCHEMA, busy_timeout_ms=busy_timeout_ms)
        self._conn = self._file.conn

    # -- binding keys to batches

    async def bind(
        self, keys: Sequence[str], make_batches: Callable[[list[str]], list[NewBatch]]
    ) -> dict[str, str]:
        """key → correlation id for every key. Keys already bound keep their batch; the others are
        grouped by make_batches (called inside the transaction) and bound, all in one commit."""
        return await self._file.run(self._bind, list(dict.fromkeys(keys)), make_batches)

    def _bind(self, keys: list[str], make_batches: Callable[[list[str]], list[NewBatch]]) -> dict[str, str]:
        now = _now()
        with self._file.transaction():
            bound = self._select_bindings(keys)
            unbound = [k for k in keys if k not in bound]
            if unbound:
                for batch in make_batches(unbound):
                    self._conn.execute(
                        "INSERT OR IGNORE INTO batches (correlation_id, body, size, state, created, updated)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (batch.correlation_id, batch.body, len(batch.keys), BatchState.RECORDED, now, now),
                    )
                    self._conn.executemany(
                        "INSERT INTO batch_keys (idempotency_key, correlation_id) VALUES (?, ?)",
                        [(k, batch.correlation_id) for k in batch.keys],
                    )
                    bound.update((k, batch.correlation_id) for k in batch.keys)
        return bound

    async def bindings(self, keys: Sequence[str]) -> dict[str, str]:
        """key → correlation id for the keys this sidecar ever put in a batch."""

        def run() -> dict[str, str]:
            with self._file.locked():
                return self._select_bindings(list(dict.fromkeys(keys)))

        return await self._file.run(run)

    def _select_bindings(self, keys: list[str]) -> dict[str, str]:
        select = "SELECT idempotency_key, correlation_id FROM batch_keys WHERE idempotency_key"
        return dict(rows_in(self._conn, select, keys))

    async def keys_of(self, correlation_id: str) -> list[str]:
        def run() -> list[str]:
            with self._file.locked():
                rows = self._conn.execute(
                    "SELECT idempotency_key FROM batch_keys WHERE correlation_id = ?", (correlation_id,)
                ).fetchall()
            return [r[0] for r in rows]

        return await self._file.run(run)

    # -- batches

    async def get(self, correlation_id: str) -> BatchRecord | None:
        def run() -> BatchRecord | None:
            with self._file.locked():
                row = self._conn.execute(
                    "SELECT correlation_id, body, size, state, batch_id, server_correlation_id, error_code,"
                    " error_message, in_flight_until FROM batches WHERE correlation_id = ?",
                    (correlation_id,),
                ).fetchone()
            if row is None:
                return None
            return BatchRecord(row[0], row[1], row[2], BatchState(row[3]), *row[4:])

        return await self._file.run(run)

    async def update(
        self,
        correlation_id: str,
        *,
        state: BatchState | None = None,
        batch_id: str | None = None,
        server_correlation_id: str | None = None,
        error: tuple[str, str] | None = None,
        in_flight_until: float | None = None,
    ) -> None:
        """Sets the given fields. A batch never moves back from COMPLETED or FAILED."""
        sets: list[str] = ["updated = ?"]
        args: list[object] = [_now()]
        if in_flight_until is not None:
            sets.append("in_flight_until = ?")
            args.append(float(in_flight_until))
        for column, value in (
            ("state", state),
            ("batch_id", batch_id),
            ("server_correlation_id", server_correlation_id),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(str(value))
        if error is not None:
            sets += ["error_code = ?", "error_message = ?"]
            args += list(error)
        args += [correlation_id, BatchState.COMPLETED, BatchState.FAILED]

        def run() -> None:
            with self._file.transaction():
                self._conn.execute(
                    f"UPDATE batches SET {', '.join(sets)} WHERE correlation_id = ? AND state NOT IN (?, ?)",
                    args,
                )

        await self._file.run(run)

    async def mark_posted(self, correlation_id: str) -> None:
        def run() -> None:
            with self._file.transaction():
                self._conn.execute("INSERT OR IGNORE INTO posted VALUES (?, ?)", (correlation_id, _now()))

        await self._file.run(run)

    async def was_posted(self, correlation_id: str) -> bool:
        def run() -> bool:
            with self._file.locked():
                row = self._conn.execute(
                    "SELECT 1 FROM posted WHERE correlation_id = ?", (correlation_id,)
                ).fetchone()
            return row is not None

        return await self._file.run(run)

    # -- results

    async def save_results(self, results: Sequence[RailResult], *, completed: str | None = None) -> None:
        """Caches final results (the first one of a key stays); marks batch `completed` COMPLETED."""

        def run() -> None:
            with self._file.transaction():
                self._conn.executemany(
                    "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?)",
                    [
                        (r.idempotency_key, str(r.outcome), r.reason_code, r.reason_message, r.rail_reference)
                        for r in results
                    ],
                )
                if completed is not None:
                    self._conn.execute(
                        "UPDATE batches SET state = ?, updated = ? WHERE correlation_id = ? AND state <> ?",
                        (BatchState.COMPLETED, _now(), completed, BatchState.FAILED),
                    )

        await self._file.run(run)

    async def results(self, keys: Sequence[str]) -> dict[str, RailResult]:
        def run() -> dict[str, RailResult]:
            found: dict[str, RailResult] = {}
            with self._file.locked():
                for key, outcome, code, message, ref in rows_in(
                    self._conn,
                    "SELECT idempotency_key, outcome, reason_code, reason_message, rail_reference"
                    " FROM results WHERE idempotency_key",
                    list(dict.fromkeys(keys)),
                ):
                    found[key] = RailResult(key, Outcome(outcome), code, message, ref)
            return found

        return await self._file.run(run)

    async def known_correlation(self, correlation_id: str) -> bool:
        return await self.get(correlation_id) is not None

    # -- lifecycle

    def close(self) -> None:
        self._file.close()

    async def aclose(self) -> None:
        await self._file.aclose()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
