"""The `rig` fixture: a fresh fault-test world per test (its own database, rail and ledger), torn down
(processes killed, queues and database dropped) whatever the test did."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.rig import Rig
from tests.support.databases import create_database, drop_database
from tests.support.processes import service_urls


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    shared_url, amqp_url = service_urls()
    database_url = await create_database(shared_url)
    world = Rig(tmp_path, database_url, amqp_url)
    try:
        yield world
    finally:
        await world.close()
        with contextlib.suppress(Exception):
            await drop_database(shared_url, database_url)
