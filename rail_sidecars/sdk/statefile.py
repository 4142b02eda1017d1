"""A rail's SQLite state file: what it committed before it told anybody (a key's batch, a ledger entry).

Every rail's store opens its file through StateFile, so all of them read the same way: owner-only mode
(it holds payees' addresses), WAL with synchronous FULL (a committed row survives a power cut, since the
POST or the report follows at once), a busy timeout (several sidecar processes may share the file), one
connection shared by worker threads under one lock, and one transaction helper whose writes BEGIN
IMMEDIATE (writers take the write lock first, so two never deadlock upgrading a read lock).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Bound parameters per statement stay well under SQLite's limit.
PARAMETERS_PER_STATEMENT = 500


class StateFile:
    def __init__(
        self,
        path: str | Path,
        schema: Sequence[str],
        *,
        busy_timeout_ms: int = 30_000,
        pragmas: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only (0600); SQLite's -wal and -shm files take the same mode.
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(self.path, 0o600)
        self.lock = threading.Lock()
        # isolation_level=None: transactions are explicit (see transaction()).
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # busy_timeout first: another process may be switching the file to WAL or writing at this moment.
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        for pragma in pragmas:
            self.conn.execute(f"PRAGMA {pragma}")
        for script in schema:
            self.conn.executescript(script)

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads that need no snapshot across statements."""
        with self.lock:
            yield self.conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE (or BEGIN, for a read in one snapshot) … COMMIT, or ROLLBACK on any error;
        holds the lock throughout."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Runs fn in a worker thread, so the event loop never waits on fsync; fn takes the lock itself
        (through locked() or transaction())."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """fn in a worker thread, holding the lock."""

        def call() -> T:
            with self.lock:
                return fn(*args, **kwargs)

        return await asyncio.to_thread(call)

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """fn in a worker thread, inside a write transaction: committed before this returns."""

        def call() -> T:
            with self.transaction():
                return fn(*args, **kwargs)

        return await asyncio.to_thread(call)

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def rows_in(conn: sqlite3.Connection, select: str, values: Sequence[Any], then: str = "") -> Iterator[Any]:
    """The rows of `{select} IN (values){then}`: one statement per PARAMETERS_PER_STATEMENT values."""
    for start in range(0, len(values), PARAMETERS_PER_STATEMENT):
        part = values[start : start + PARAMETERS_PER_STATEMENT]
        yield from conn.execute(f"{select} IN ({','.join('?' * len(part))}){then}", part)
