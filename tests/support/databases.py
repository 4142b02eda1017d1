"""Fresh PostgreSQL databases beside the shared one, so a run's relay and sweeper see only its own work."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gpo_server.storage.store import Store


async def create_database(url: str, prefix: str = "gpo_fault") -> str:
    """A fresh, empty database beside the one `url` names; returns its URL. Each test gets its own, so
    its sweeper and relay see only its payments, and no other run's orchestrator sees them."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _outside_transactions(url, f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str, fresh_url: str) -> None:
    await _outside_transactions(url, f'DROP DATABASE IF EXISTS "{make_url(fresh_url).database}" WITH (FORCE)')


async def _outside_transactions(url: str, statement: str) -> None:
    """CREATE and DROP DATABASE refuse to run inside a transaction block."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def migrated_store(kind: str, tmp_path: Path, *, own_database: str = "") -> AsyncIterator[Store]:
    """A migrated Store: "sqlite" in tmp_path; otherwise PostgreSQL, on the shared test database, or
    with `own_database` (a name prefix) on a fresh database beside it, dropped afterwards."""
    from tests.support.processes import service_urls

    shared = fresh = ""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        shared, _ = service_urls()
        url = fresh = await create_database(shared, own_database) if own_database else shared
    store = Store.open(url)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()
        if fresh and own_database:
            await drop_database(shared, fresh)
