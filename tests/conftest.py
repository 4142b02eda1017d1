"""Shared fixtures: a real in-process Orchestrator on each backend.

"embedded": SQLite, the in-process queue and the simulator sidecar in-process (no URLs).
"postgres": PostgreSQL and RabbitMQ (GPO_TEST_DATABASE_URL / GPO_TEST_AMQP_URL), with a SidecarRunner
started in the test process on a rail of its own, so stale RabbitMQ messages of other runs never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import grpc
import pytest

from gpo_kernel.queueing.base import dead_letter_queue_name, queue_name
from gpo_server.api.auth import SIDECAR_ROLE, mint_token
from gpo_server.app import Orchestrator
from gpo_server.client import GpoClient
from gpo_server.config import Settings

# Deterministic simulated failures, so every batch has SUCCEEDED and FAILED payments to total.
SIMULATOR = "failure_rate=0.2,seed=7"


@dataclass
class Gpo:
    """A running orchestrator (and its sidecar) plus what tests need to reach it."""

    backend: str
    orchestrator: Orchestrator
    secret: bytes
    ledger: Path
    rail: str
    _clients: list[GpoClient] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.orchestrator.port}"

    def token(self, programs: Sequence[str], roles: Sequence[str] = (), subject: str = "test") -> str:
        return mint_token(self.secret, subject, programs, roles)

    def token_for_rails(self, rails: Sequence[str]) -> str:
        """A sidecar's token serving `rails`."""
        return mint_token(self.secret, "test-sidecar", [], [SIDECAR_ROLE], rails=rails)

    def client(self, programs: Sequence[str], roles: Sequence[str] = (), subject: str = "test") -> GpoClient:
        client = GpoClient(self.target, self.token(programs, roles, subject))
        self._clients.append(client)
        return client


@pytest.fixture(params=["embedded", "postgres"])
async def gpo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gpo]:
    async with running_gpo(request.param, tmp_path) as gpo:
        yield gpo


@contextlib.asynccontextmanager
async def running_gpo(backend: str, tmp_path: Path, **settings_given: Any) -> AsyncIterator[Gpo]:
    """An orchestrator on `backend` ("embedded" or "postgres"), with Settings fields overridden by
    `settings_given` (tests of one duty configure it here rather than patching)."""
    secret = secrets.token_bytes(32)
    ledger = tmp_path / "simulator-ledger.db"
    given: dict[str, Any] = dict(
        data_dir=tmp_path, listen="127.0.0.1:0", auth_hs256_secrets=(secret,), simulator=SIMULATOR
    )
    if backend == "postgres":
        database_url = os.environ.get("GPO_TEST_DATABASE_URL")
        amqp_url = os.environ.get("GPO_TEST_AMQP_URL")
        if not database_url or not amqp_url:
            pytest.skip(
                "GPO_TEST_DATABASE_URL and GPO_TEST_AMQP_URL are not set "
                "(run scripts/services.sh for a local PostgreSQL and RabbitMQ)"
            )
        given |= {"database_url": database_url, "amqp_url": amqp_url}
        given["default_rail"] = f"sim{uuid.uuid4().hex[:12]}"
    settings = Settings(**(given | settings_given))  # frozen: built once, with the test's settings
    orchestrator = Orchestrator(settings)
    await orchestrator.start()
    gpo = Gpo(backend, orchestrator, secret, ledger, settings.default_rail)
    sidecar_stop = asyncio.Event()
    sidecar: asyncio.Task[None] | None = None
    try:
        if backend == "postgres":
            sidecar = await _start_sidecar(gpo, settings, sidecar_stop)
        yield gpo
    finally:
        for client in gpo._clients:
            await client.close()
        if sidecar is not None:
            sidecar_stop.set()
            await sidecar
        await orchestrator.stop(grace_s=5)
        if backend == "postgres":
            await _delete_queues(settings.amqp_url, settings.default_rail)


async def _start_sidecar(gpo: Gpo, settings: Settings, stop: asyncio.Event) -> asyncio.Task[None]:
    from gpo_kernel.queueing.rabbitmq import RabbitMQBroker
    from rail_sidecars.rails.simulator import SimulatorRail, SimulatorSettings
    from rail_sidecars.runner import SidecarRunner

    broker = RabbitMQBroker(settings.amqp_url)
    await broker.connect()
    channel = grpc.aio.insecure_channel(gpo.target)
    rail = SimulatorRail(SimulatorSettings.parse(settings.simulator, ledger_path=str(gpo.ledger)))
    runner = SidecarRunner(
        rail_name=gpo.rail,
        rail=rail,
        broker=broker,
        channel=channel,
        token=gpo.token([], [SIDECAR_ROLE]),
        sidecar_name="test-sidecar",
    )

    async def run() -> None:
        try:
            await runner.run(stop)
        finally:
            await rail.close()
            await channel.close()
            await broker.close()

    task = asyncio.create_task(run())
    await asyncio.sleep(0)
    return task


async def _delete_queues(amqp_url: str, rail: str) -> None:
    """Each postgres server has a rail of its own: drop its queues so runs leave nothing behind."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in (queue_name(rail), dead_letter_queue_name(rail)):
                await channel.queue_delete(name)
