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
from dataclasses import asdict, dataclass, field, replace
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

# The simulated sponsor bank's funds blocks (docs/TREASURY.md): at most one per block_id, ever. A release
# of a block never placed leaves a RELEASED row with amount 0, so that a late block request is refused.
_BLOCKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS funds_blocks (
    block_id          TEXT PRIMARY KEY,
    batch             TEXT NOT NULL,
    payer_fa          TEXT NOT NULL,
    currency          TEXT NOT NULL,
    amount_hundredths INTEGER NOT NULL,
    used_hundredths   INTEGER NOT NULL,   -- debited against it
    state             TEXT NOT NULL,      -- 'blocked' or 'released'
    requests          INTEGER NOT NULL,   -- block requests received under this id
    create_time       TEXT NOT NULL,
    update_time       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS funds_blocks_batch ON funds_blocks (batch, payer_fa, currency);
CREATE TABLE IF NOT EXISTS debits (
    idempotency_key   TEXT PRIMARY KEY,   -- one debit per paid key, however often it was executed
    block_id          TEXT,               -- NULL: debited from the free balance
    payer_fa          TEXT NOT NULL,
    currency          TEXT NOT NULL,
    amount_hundredths INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS free_debits (  -- per account: debits outside any block
    payer_fa          TEXT NOT NULL,
    currency          TEXT NOT NULL,
    amount_hundredths INTEGER NOT NULL,
    PRIMARY KEY (payer_fa, currency)
) WITHOUT ROWID;
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
    # The bank's funds blocks (docs/TREASURY.md), each with what was debited against it and what is left.
    funds_blocks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        totals = asdict(self)
        if not self.funds_blocks:
            del totals["funds_blocks"]  # a bank without funds control prints what it always printed
        return json.dumps(totals, sort_keys=True)


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
            path,
            (_SCHEMA, _BLOCKS_SCHEMA),
            busy_timeout_ms=busy_timeout_ms,
            pragmas=("wal_autocheckpoint = 16384",),
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

    # -- the bank's funds (only rails with funds control or balances use these)

    async def block(
        self,
        block_id: str,
        batch: str,
        payer_fa: str,
        currency: str,
        amount_hundredths: int,
        balance_hundredths: int | None,
    ) -> tuple[str, str, bool]:
        """Blocks the amount under block_id if the payer's available balance (None: unlimited) covers
        it: ("blocked" | "insufficient" | "released", the bank's words, whether a new block was placed).
        A block_id seen before answers as it stands and blocks nothing more."""
        return await self._file.run(
            self.block_sync, block_id, batch, payer_fa, currency, amount_hundredths, balance_hundredths
        )

    def block_sync(
        self,
        block_id: str,
        batch: str,
        payer_fa: str,
        currency: str,
        amount_hundredths: int,
        balance_hundredths: int | None,
    ) -> tuple[str, str, bool]:
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._file.transaction() as conn:
            row = conn.execute("SELECT state FROM funds_blocks WHERE block_id = ?", (block_id,)).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE funds_blocks SET requests = requests + 1, update_time = ? WHERE block_id = ?",
                    (now, block_id),
                )
                return str(row[0]), f"block {block_id} is {row[0]} already", False
            if balance_hundredths is not None:
                available = balance_hundredths - _committed(conn, payer_fa, currency)
                if available < amount_hundredths:
                    return (
                        "insufficient",
                        f"available {format_hundredths(available)} {currency},"
                        f" {format_hundredths(amount_hundredths)} asked",
                        False,
                    )
            conn.execute(
                "INSERT INTO funds_blocks VALUES (?, ?, ?, ?, ?, 0, 'blocked', 1, ?, ?)",
                (block_id, batch, payer_fa, currency, amount_hundredths, now, now),
            )
            return "blocked", f"{format_hundredths(amount_hundredths)} {currency} blocked", True

    async def release(self, block_id: str, batch: str, payer_fa: str, currency: str) -> str:
        return await self._file.run(self.release_sync, block_id, batch, payer_fa, currency)

    def release_sync(self, block_id: str, batch: str, payer_fa: str, currency: str) -> str:
        """Releases what is left of the block; a block never placed is recorded released (amount 0), so
        a block request arriving later under its id is refused."""
        now = datetime.now(UTC).isoformat(timespec="microseconds")
        with self._file.transaction() as conn:
            conn.execute(
                "INSERT INTO funds_blocks VALUES (?, ?, ?, ?, 0, 0, 'released', 0, ?, ?)"
                " ON CONFLICT (block_id) DO UPDATE SET state = 'released', update_time = excluded.update_time",
                (block_id, batch, payer_fa, currency, now, now),
            )
        return "released"

    async def record_funded(
        self, entries: Sequence[LedgerEntry], payers: Sequence[tuple[str, str]], balances: Balances
    ) -> list[LedgerEntry]:
        """record() for a bank that keeps balances: each payment that would succeed is debited against
        its batch's block (payers: (batch, payer_fa) per entry), else against the payer's free balance,
        else fails for insufficient funds; all in one transaction. Returns the entries as recorded."""
        return await self._file.run(self.record_funded_sync, entries, payers, balances)

    def record_funded_sync(
        self, entries: Sequence[LedgerEntry], payers: Sequence[tuple[str, str]], balances: Balances
    ) -> list[LedgerEntry]:
        recorded = []
        with self._file.transaction() as conn:
            for entry, (batch, payer_fa) in zip(entries, payers, strict=True):
                amount = entry.amount_hundredths
                if entry.outcome is Outcome.SUCCEEDED and amount is not None:
                    debited = conn.execute(
                        "SELECT 1 FROM debits WHERE idempotency_key = ?", (entry.idempotency_key,)
                    ).fetchone()
                    if debited is None:
                        entry = _debit(conn, entry, amount, batch, payer_fa, balances)
                recorded.append(entry)
            conn.execute(_UPSERT, (json.dumps(_rows(recorded)),))
        return recorded

    def funds_blocks(self) -> list[dict[str, Any]]:
        """Every block: its amount, what was debited against it (used) and what is left (remaining)."""
        with self._file.transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT block_id, batch, payer_fa, currency, amount_hundredths, state, requests,"
                " used_hundredths FROM funds_blocks ORDER BY create_time, block_id"
            ).fetchall()
        return [
            {
                "block_id": block_id,
                "batch": batch,
                "payer_fa": payer_fa,
                "currency": currency,
                "amount": format_hundredths(amount),
                "state": state,
                "requests": requests,
                "used": format_hundredths(used),
                "remaining": format_hundredths(amount - used if state == "blocked" else 0),
            }
            for block_id, batch, payer_fa, currency, amount, state, requests, used in rows
        ]

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
            funds_blocks=self.funds_blocks(),
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


# A bank's balances: (payer_fa, currency) -> hundredths; an account and currency not named is unlimited.
Balances = dict[tuple[str, str], int]


def _committed(conn: Any, payer_fa: str, currency: str) -> int:
    """What the payer's balance no longer has free: blocks held (their whole amount), what was debited
    against blocks since released, and debits outside any block."""
    row = conn.execute(
        "SELECT COALESCE((SELECT SUM(CASE WHEN state = 'blocked' THEN amount_hundredths ELSE used_hundredths"
        " END) FROM funds_blocks WHERE payer_fa = ? AND currency = ?), 0)"
        " + COALESCE((SELECT amount_hundredths FROM free_debits WHERE payer_fa = ? AND currency = ?), 0)",
        (payer_fa, currency, payer_fa, currency),
    ).fetchone()
    return int(row[0])


def _debit(
    conn: Any, entry: LedgerEntry, amount: int, batch: str, payer_fa: str, balances: Balances
) -> LedgerEntry:
    """Debits a payment against its batch's held block when what is left of it covers the amount, else
    against the payer's free balance, else fails it for insufficient funds."""
    currency = entry.currency
    block = conn.execute(
        "SELECT block_id FROM funds_blocks WHERE batch = ? AND payer_fa = ? AND currency = ?"
        " AND state = 'blocked' AND amount_hundredths - used_hundredths >= ?",
        (batch, payer_fa, currency, amount),
    ).fetchone()
    if block is not None:
        conn.execute(
            "UPDATE funds_blocks SET used_hundredths = used_hundredths + ? WHERE block_id = ?",
            (amount, block[0]),
        )
    else:
        balance = balances.get((payer_fa, currency))
        if balance is not None and balance - _committed(conn, payer_fa, currency) < amount:
            return replace(
                entry,
                outcome=Outcome.FAILED,
                reason_code="rjct.payer.insufficient_funds",
                reason_message="insufficient funds in the payer's account",
            )
        conn.execute(
            "INSERT INTO free_debits VALUES (?, ?, ?) ON CONFLICT (payer_fa, currency)"
            " DO UPDATE SET amount_hundredths = amount_hundredths + excluded.amount_hundredths",
            (payer_fa, currency, amount),
        )
    conn.execute(
        "INSERT INTO debits VALUES (?, ?, ?, ?, ?)",
        (entry.idempotency_key, block[0] if block is not None else None, payer_fa, currency, amount),
    )
    return entry


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
    "Balances",
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
