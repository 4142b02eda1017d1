"""The schema as migrated matches tables.py, and dispatch's updates of payments stay in place (HOT)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from gpo_server.storage.store import NewBatch, Store, cached_plans
from gpo_server.storage.tables import batches, metadata, payment_status_changes, payments
from tests.support.databases import migrated_store

# Columns that dispatch (relay, claims, results, the sweeper, redrives) changes. An index naming one (as a key
# or in its predicate) would make each of those updates rewrite every index of the row.
DISPATCH_COLUMNS = {
    "status",
    "update_time",
    "attempts",
    "lease_owner",
    "lease_token",
    "lease_expire_time",
    "in_flight_until",
    "reason_code",
    "reason_message",
    "rail_reference",
    "failure_definite",
    "attention_reason",
    "sweeps",
    "redrives",
}


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in _store(request.param, tmp_path):
        yield s


@pytest.fixture
async def postgres_store(tmp_path: Path) -> AsyncIterator[Store]:
    async for s in _store("postgres", tmp_path):
        yield s


async def _store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with migrated_store(kind, tmp_path, own_database="gpo_schema") as store:
        yield store


async def test_migrations_build_exactly_the_schema_tables_py_declares(store: Store) -> None:
    async with store.engine.connect() as conn:
        differences = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert [d for d in differences if d[0] != "remove_table" or d[1].name != "alembic_version"] == []


async def test_no_payments_index_names_a_column_dispatch_updates(postgres_store: Store) -> None:
    async with postgres_store.engine.connect() as conn:
        definitions = (
            (await conn.execute(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'payments'")))
            .scalars()
            .all()
        )
        options = (
            await conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'payments'"))
        ).scalar_one()
    # The primary key, the reference index, and the operators' filter indexes (migration 0014).
    names = {d.split(" ON ")[0].split()[-1] for d in definitions}
    assert names == {
        "pk_payments",
        "uq_payments_batch_reference",
        "ix_payments_reference",
        "ix_payments_batch_rail",
    }
    for definition in definitions:
        assert not any(column in definition for column in DISPATCH_COLUMNS), definition
    assert options == ["fillfactor=60"]


async def test_dispatch_updates_of_a_payment_are_heap_only(postgres_store: Store) -> None:
    store = postgres_store
    async with store.engine.begin() as conn:
        assert await conn.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'payments'")) == [
            "fillfactor=60"
        ]
        # Autovacuum's ANALYZE of payments (due after the 100 rows) pins its pages while it samples them,
        # and a page pinned by another process is not pruned. The database is this test's own.
        await conn.execute(text("ALTER TABLE payments SET (autovacuum_enabled = off)"))
        await conn.execute(
            text(
                "INSERT INTO batches (uid, program, request_id, state, create_time, update_time)"
                " VALUES ('b', 'p', 'r', 'processing', now(), now())"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO payments (batch_id, number, reference_id, idempotency_key, payer_fa, payee_fa,"
                " amount_hundredths, currency_code, payee_name, note, purpose, rail, status, update_time)"
                " SELECT id, g, 'ref-' || g, 'key-' || g, 'a:x@y', 'a:z@y', 100, 'USD', '', '', '',"
                " 'simulator', 'accepted', now() FROM batches, generate_series(1, 100) AS g"
            )
        )
        previous = await conn.scalar(text("SELECT xid(pg_current_xact_id())"))
    # As dispatch does it: the relay, a claim and a result each update the payment in its own transaction
    # (each here on a new session: a session recomputes the pruning horizon only when its snapshots' xmin
    # moves, so a long-lived one may still count a snapshot that has since ended).
    sessions = create_async_engine(store.engine.url, poolclass=NullPool)
    try:
        async with store.engine.connect() as conn:
            for status in ("queued", "sent", "succeeded"):
                await _until_no_snapshot_needs_versions_of(conn, previous)
                async with sessions.begin() as session:
                    await session.execute(
                        text(
                            "UPDATE payments SET status = :status, update_time = now(),"
                            " attempts = attempts + 1, lease_owner = 'x' WHERE number <= 40"
                        ),
                        {"status": status},
                    )
                    previous = await session.scalar(text("SELECT xid(pg_current_xact_id())"))
                    await session.execute(text("SELECT pg_stat_force_next_flush()"))
            async with conn.begin():
                updated, hot = (
                    await conn.execute(
                        text(
                            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                            " WHERE relname = 'payments'"
                        )
                    )
                ).one()
    finally:
        await sessions.dispose()
    # Page pruning reclaims old versions between transactions, so nearly every update finds room in place
    # (with status indexed, none would be heap-only).
    assert updated == 120
    assert hot >= 0.9 * updated


async def _until_no_snapshot_needs_versions_of(
    conn: AsyncConnection, xid: int, deadline_s: float = 60
) -> None:
    """Waits until no other session of this database holds a snapshot or transaction older than the end of
    transaction `xid`: until then the row versions it replaced are not dead to everyone, page pruning keeps
    them, and the next update finds no room in place. Autovacuum's ANALYZE of any table of the database
    holds such a snapshot while it runs (under load it overlapped the updates: 79 of 120 heap-only)."""
    older = text(
        "SELECT string_agg(backend_type || ' ' || pid || ': ' || left(query, 80), '; ') FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND (age(backend_xmin) >= age(CAST(:xid AS xid)) OR age(backend_xid) >= age(CAST(:xid AS xid)))"
    )
    deadline = time.monotonic() + deadline_s
    while True:
        async with conn.begin():
            holders = await conn.scalar(older, {"xid": xid})
        if holders is None:
            return
        assert time.monotonic() < deadline, f"sessions still need the replaced row versions: {holders}"
        await asyncio.sleep(0.05)


async def test_outbox_payloads_are_stored_out_of_line_uncompressed(postgres_store: Store) -> None:
    async with postgres_store.engine.connect() as conn:
        storage = await conn.scalar(
            text(
                "SELECT attstorage::text FROM pg_attribute"
                " WHERE attrelid = 'outbox'::regclass AND attname = 'payload'"
            )
        )
    assert storage == "e"  # EXTERNAL: no pglz on the intake path (migration 0007)


async def test_intake_transactions_let_foreign_key_checks_use_cached_plans(postgres_store: Store) -> None:
    """Custom plans everywhere else; inside a chunk's transaction the per-row foreign key query may be
    planned once instead of once per payment."""
    batch, _ = await postgres_store.create_or_get_batch(
        NewBatch("plans", str(uuid.uuid4()), "account:treasury@cb", "", None, 0, None)
    )
    show = text("SHOW plan_cache_mode")
    async with postgres_store.chunk_transaction(batch.id) as tx:
        assert await tx.conn.scalar(show) == "auto"
        async with postgres_store.engine.connect() as other:
            assert await other.scalar(show) == "force_custom_plan"
    async with postgres_store.engine.begin() as conn:
        assert await conn.scalar(show) == "force_custom_plan"
        async with cached_plans(conn):
            assert await conn.scalar(show) == "auto"
        assert await conn.scalar(show) == "force_custom_plan"


async def test_one_update_of_many_payments_records_each_status_change_it_makes(store: Store) -> None:
    """Payment history comes from a trigger: the chunk's one UPDATE writes every change (on PostgreSQL in one
    INSERT ... SELECT for the statement), and an update that leaves the status alone writes none."""
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(seconds=1)
    async with store.engine.begin() as conn:
        batch_id = (
            await conn.execute(
                insert(batches)
                .values(
                    uid="b", program="p", request_id="r", state="processing", create_time=now, update_time=now
                )
                .returning(batches.c.id)
            )
        ).scalar_one()
        row = {
            "batch_id": batch_id,
            "reference_id": "",
            "idempotency_key": "",
            "payer_fa": "a:x@y",
            "payee_fa": "a:z@y",
            "amount_hundredths": 100,
            "currency_code": "USD",
            "payee_name": "",
            "note": "",
            "purpose": "",
            "rail": "simulator",
            "status": "accepted",
            "update_time": now,
        }
        await conn.execute(
            insert(payments), [{**row, "number": n, "reference_id": f"ref-{n}"} for n in range(1, 51)]
        )
    async with store.engine.begin() as conn:
        await conn.execute(
            text("UPDATE payments SET status = 'queued', update_time = :t WHERE number <= 30"), {"t": later}
        )
        await conn.execute(text("UPDATE payments SET attempts = attempts + 1, lease_owner = 'x'"))
    async with store.engine.connect() as conn:
        changes = (
            await conn.execute(select(payment_status_changes).order_by(payment_status_changes.c.id))
        ).all()
        if store.is_postgres:
            orientation = (
                (
                    await conn.execute(
                        text(
                            "SELECT action_orientation FROM information_schema.triggers"
                            " WHERE event_object_table = 'payments'"
                        )
                    )
                )
                .scalars()
                .all()
            )
            assert orientation == ["STATEMENT"]
    assert [c.number for c in changes] == list(range(1, 31))
    for change in changes:
        assert (change.previous_status, change.status, change.attempts) == ("accepted", "queued", 0)
        assert change.change_time.replace(tzinfo=dt.UTC) == later
        assert change.previous_time.replace(tzinfo=dt.UTC) == now
