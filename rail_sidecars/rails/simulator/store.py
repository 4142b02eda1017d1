"""The simulator rail's ledger: a SQLite file recording every payment the simulator executed.

It is the oracle of end-to-end tests: after a run, its totals say what was really paid, and its execution
counts reveal any payment GPO sent twice. It lives in its own file (WAL mode) so several sidecar
processes and the test process can open it at once, and it survives ``kill -9`` of any of them.

    python -m rail_sidecars.rails.simulator.store PATH   # prints the totals as one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpo_kernel.money import InvalidAmount, format_amount, parse_amount
from rail_sidecars.rails.base import Outcome, RailResult
from rail_sidecars.sdk.statefile import StateFile, rows_in

# Amounts are split into high and low parts before summing so SUM never overflows SQLite's 64-bit integers.
_SPLIT = 1_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    idempotency_key   TEXT PRIMARY KEY,
    reference_id      TEXT NOT NULL,
    amount_hundredths INTEGER,            -- NULL when the amount was not a valid money string
    currency          TEXT NOT NULL,
    payee_fa          TEXT NOT NULL,
    outcome           TEXT NOT NULL,
    reason_code       TEXT NOT NULL,
    reason_message    TEXT NOT NULL,
    rail_reference    TEXT NOT NULL,
    executions        INTEGER NOT NULL,
    first_time        TEXT NOT NULL,
    last_time         TEXT NOT NULL
) WITHOUT ROWID
"""

# The first execution's result stays; a re-execution only counts (the simulator is a naive rail).
# The rows arrive as one JSON array, so a whole chunk is one statement: SQLite then runs it without
# needing Python's GIL, where a per-row executemany took the GIL back for every row and, beside a busy
# event loop thread, waited for it each time.
_UPSERT = """
INSERT INTO payments (idempotency_key, reference_id, amount_hundredths, currency, payee_fa, outcome,
                      reason_code, reason_message, rail_reference, executions, first_time, last_time)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
       json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), 1,
       json_extract(value, '$[9]'), json_extract(value, '$[10]')
FROM json_each(?) WHERE true
ON CONFLICT (idempotency_key) DO UPDATE SET executions = executions + 1, last_time = excluded.last_time
"""


def parse_hundredths(amount: str) -> int | None:
    """Exact integer hundredths of a money string like "125.5" or "125.50"; None if it is not one."""
    try:
        return parse_amount(amount)
    except InvalidAmount:
        return None


def format_hundredths(hundredths: int) -> str:
    """The decimal string of integer hundredths, always with two decimals ("0.30")."""
    return format_amount(hundredths)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One execution of one payment, as the rail recorded it."""

    idempotency_key: str
    reference_id: str
    amount_hundredths: int | None
    currency: str
    payee_fa: str
    outcome: Outcome
    reason_code: str = ""
    reason_message: str = ""
    rail_reference: str = ""

    def result(self) -> RailResult:
        return RailResult(
            idempotency_key=self.idempotency_key,
            outcome=self.outcome,
            reason_code=self.reason_code,
            reason_message=self.reason_message,
            rail_reference=self.rail_reference,
        )


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    payments: int  # keys that succeeded
    amount: str  # decimal sum of succeeded amounts over all currencies
    amounts_by_currency: dict[str, str] = field(default_factory=dict)
    failed: int = 0  # keys that failed
    duplicates: int = 0  # keys executed more than once
    executions: int = 0  # every execution, duplicates included

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _rows(entries: Sequence[LedgerEntry]) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    return [
        (
            e.idempotency_key,
            e.reference_id,
            e.amount_hundredths,
            e.currency,
            e.payee_fa,
            str(e.outcome),
            e.reason_code,
            e.reason_message,
            e.rail_reference,
            now,
            now,
        )
        for e in entries
    ]


class Ledger:
    """The simulator's record of executed payments, in a SQLite file of its own.

    Writes run in a worker thread (asyncio.to_thread) so the event loop is never blocked on fsync.
    One connection is shared by the threads, serialized by a lock. Chunks recorded while a commit is
    under way wait for the next one and share it (group commit): one fsync for all of them instead of
    one each, which had made the simulator's ledger the slowest stage of a zero-latency run.
    """

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 30_000) -> None:
        self.path = str(path)
        # Checkpoints copy the WAL into the database file and fsync it: every 64 MB of WAL, not every 4 MB.
        self._file = StateFile(
            path, (_SCHEMA,), busy_timeout_ms=busy_timeout_ms, pragmas=("wal_autocheckpoint = 16384",)
        )
        self._conn = self._file.conn
        self._queued: list[tuple[list[tuple[Any, ...]], asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    # -- writes

    async def record(self, entries: Sequence[LedgerEntry]) -> None:
        """Records one execution of each entry, committed before this returns. The entries are written
        in one transaction, possibly shared with other chunks recorded at the same moment."""
        if not entries:
            return
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((_rows(entries), committed))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued())
        await committed

    async def _commit_queued(self) -> None:
        while self._queued:
            group, self._queued = self._queued, []
            try:
                await self._file.run(self._write, [row for rows, _ in group for row in rows])
            except BaseException as exc:
                for _, committed in group:
                    if not committed.done():
                        committed.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for _, committed in group:
                if not committed.done():
                    committed.set_result(None)

    def record_sync(self, entries: Sequence[LedgerEntry]) -> None:
        """record() for callers without an event loop: the entries in one transaction of their own."""
        self._write(_rows(entries))

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        with self._file.transaction():
            self._conn.execute(_UPSERT, (json.dumps(rows),))

    # -- reads

    async def look_up(self, idempotency_keys: Sequence[str]) -> dict[str, RailResult]:
        return await self._file.run(self.look_up_sync, idempotency_keys)

    def look_up_sync(self, idempotency_keys: Sequence[str]) -> dict[str, RailResult]:
        """The stored (first) result of each key ever executed, with how many times it was executed;
        unknown keys are absent."""
        keys = list(dict.fromkeys(idempotency_keys))
        found: dict[str, RailResult] = {}
        with self._file.locked():
            for key, outcome, code, message, reference, executions in rows_in(
                self._conn,
                "SELECT idempotency_key, outcome, reason_code, reason_message, rail_reference, executions"
                " FROM payments WHERE idempotency_key",
                keys,
            ):
                found[key] = RailResult(
                    key, Outcome(outcome), code, message, reference, executions=executions
                )
        return found

    async def executions(self, idempotency_keys: Sequence[str]) -> dict[str, int]:
        return await self._file.run(self.executions_sync, idempotency_keys)

    def executions_sync(self, idempotency_keys: Sequence[str]) -> dict[str, int]:
        """How many times each key was executed; keys never executed are absent."""
        keys = list(dict.fromkeys(idempotency_keys))
        counts: dict[str, int] = {}
        with self._file.locked():
            select = "SELECT idempotency_key, executions FROM payments WHERE idempotency_key"
            counts.update((key, n) for key, n in rows_in(self._conn, select, keys))
        return counts

    async def totals_async(self) -> LedgerTotals:
        return await self._file.run(self.totals)

    def totals(self) -> LedgerTotals:
        """What the rail really paid, read in one snapshot (one read transaction)."""
        with self._file.transaction(write=False):
            counts = self._conn.execute(
                "SELECT"
                " COALESCE(SUM(outcome = 'succeeded'), 0),"
                " COALESCE(SUM(outcome = 'failed'), 0),"
                " COALESCE(SUM(executions > 1), 0),"
                " COALESCE(SUM(executions), 0)"
                " FROM payments"
            ).fetchone()
            sums = self._conn.execute(
                "SELECT currency,"
                f" COALESCE(SUM(amount_hundredths / {_SPLIT}), 0),"
                f" COALESCE(SUM(amount_hundredths % {_SPLIT}), 0)"
                " FROM payments WHERE outcome = 'succeeded' AND amount_hundredths IS NOT NULL"
                " GROUP BY currency ORDER BY currency"
            ).fetchall()
        by_currency = {currency: high * _SPLIT + low for currency, high, low in sums}
        payments, failed, duplicates, executions = (int(n) for n in counts)
        return LedgerTotals(
            payments=payments,
            amount=format_hundredths(sum(by_currency.values())),
            amounts_by_currency={c: format_hundredths(h) for c, h in by_currency.items()},
            failed=failed,
            duplicates=duplicates,
            executions=executions,
        )

    # -- lifecycle

    def close(self) -> None:
        with self._file.locked():
            self._conn.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_totals(path: str | Path) -> LedgerTotals:
    """The totals of a ledger file (convenience for tests and scripts)."""
    with Ledger(path) as ledger:
        return ledger.totals()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rail_sidecars.rails.simulator.store",
        description="Print the simulator ledger's totals as one JSON line.",
    )
    parser.add_argument("path", help="the ledger's SQLite file")
    args = parser.parse_args(argv)
    # Opening a missing path would create an empty ledger and report zero payments: refuse instead.
    if not Path(args.path).is_file():
        print(f"no ledger at {args.path}", file=sys.stderr)
        return 2
    print(read_totals(args.path).to_json())
    return 0


__all__ = [
    "Ledger",
    "LedgerEntry",
    "LedgerTotals",
    "format_hundredths",
    "main",
    "parse_hundredths",
    "read_totals",
]

if __name__ == "__main__":
    sys.exit(main())
