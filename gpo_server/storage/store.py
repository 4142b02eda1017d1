"""The Store: every read and write GPO makes, one method per use, each a few statements at most.

Hot paths work on whole chunks: intake inserts a chunk with COPY (PostgreSQL) or one executemany
(SQLite); claims and results are one UPDATE per chunk. Nothing costs a round trip per payment.

The statements live in one part per caller: `batches.py` (open, find, list and read batches and
payments), `intake.py` (a chunk's transaction, the end of an upload), `dispatch.py` (relay, claims,
leases, outcomes), `operations.py` (operators, background duties, the audit trail); `records.py` holds the
types they take and return, `sql.py` the helpers they share. `Store` joins the parts as mixins rather than
holding them as members: they share one engine and the audit append, call one another (the end of an
upload reads its batch back), and every caller keeps calling `store.method(...)` without forty forwarding
methods here. The names callers import from this module stay importable from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gpo_server.storage.approvals import ApprovalStore
from gpo_server.storage.batches import BatchStore, read_batch_totals
from gpo_server.storage.cycles import CycleExists, CycleRecord, CycleStore, CycleTotals, NewCycle
from gpo_server.storage.dispatch import PAID_TWICE, STUCK_UNKNOWN, DispatchStore
from gpo_server.storage.funds import FundsStore
from gpo_server.storage.intake import ANALYZE_AFTER, REFERENCE_INDEX, ChunkTransaction, IntakeStore
from gpo_server.storage.operations import (
    REDRIVES_EXHAUSTED,
    STUCK_UNANSWERED,
    OperationsStore,
)
from gpo_server.storage.records import (
    PAYMENT_COLUMNS,
    BatchRecord,
    BeneficiaryTaken,
    ClaimOutcome,
    CycleRefused,
    DeadLetterOutcome,
    ForeignRail,
    NewBatch,
    NewPayment,
    NewWorkChunk,
    NothingToDo,
    PaymentRow,
    PublishableChunk,
    PublishDone,
    ReferenceTaken,
    ResultUpdate,
    StatusTotal,
    WorkBuilder,
)
from gpo_server.storage.sql import cached_plans, utcnow

__all__ = [
    "ANALYZE_AFTER",
    "PAID_TWICE",
    "PAYMENT_COLUMNS",
    "REDRIVES_EXHAUSTED",
    "REFERENCE_INDEX",
    "STUCK_UNANSWERED",
    "STUCK_UNKNOWN",
    "BatchRecord",
    "BeneficiaryTaken",
    "ChunkTransaction",
    "ClaimOutcome",
    "CycleExists",
    "CycleRecord",
    "CycleRefused",
    "CycleTotals",
    "DeadLetterOutcome",
    "ForeignRail",
    "NewBatch",
    "NewCycle",
    "NewPayment",
    "NewWorkChunk",
    "NothingToDo",
    "PaymentRow",
    "PublishDone",
    "PublishableChunk",
    "ReferenceTaken",
    "ResultUpdate",
    "StatusTotal",
    "Store",
    "WorkBuilder",
    "cached_plans",
    "read_batch_totals",
    "utcnow",
]

MIGRATIONS = Path(__file__).parent / "migrations"


class Store(IntakeStore, BatchStore, DispatchStore, OperationsStore, FundsStore, CycleStore, ApprovalStore):
    def __init__(self, engine: AsyncEngine, *, funds_rails: frozenset[str] = frozenset()) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self.funds_rails = funds_rails

    @classmethod
    def open(cls, url: str, *, pool_size: int = 10, funds_rails: frozenset[str] = frozenset()) -> Store:
        if url.startswith("sqlite"):
            if (database := make_url(url).database) and database != ":memory:":
                _create_private(Path(database))
            engine = create_async_engine(url, connect_args={"timeout": 60})
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                # asyncpg prepares every statement; after five runs PostgreSQL may switch to a generic
                # plan that ignores the array's size. For `batch_id = $1 AND number = ANY($2)` that plan
                # scanned the whole batch per chunk (quadratic in the batch size), so plans stay custom.
                connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
            )
        return cls(engine, funds_rails=funds_rails)

    async def migrate(self) -> None:
        """Brings the schema to the newest migration."""
        async with self.engine.begin() as conn:
            if self.is_postgres:
                # Replicas starting together on an empty database take turns; the second finds it done.
                await conn.execute(text("SELECT pg_advisory_xact_lock(7350001)"))
            await conn.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()


def _create_private(path: Path) -> None:
    """The SQLite file readable by its owner only (0600, in a 0700 folder when GPO creates it): it holds
    people's names and account numbers. SQLite gives its -wal and -shm files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (watch, list) run beside the writer; FULL makes each commit durable on return.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
