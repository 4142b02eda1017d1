"""The embedded mode: the one module of gpo_server that imports sidecar code (rail_sidecars).

Everything else in gpo_server reaches the sidecars only through here (an import contract in pyproject.toml
checks it), so the orchestrator runs without the sidecars' rails being imported until embedded mode,
`gpo sidecar` or the demo asks for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc

from gpo_kernel.queueing.base import Broker
from gpo_kernel.rails_config import load_rails_config
from gpo_server.config import Settings
from rail_sidecars.cli import main as sidecar_main
from rail_sidecars.rails.base import Rail
from rail_sidecars.rails.registry import make_rail
from rail_sidecars.rails.simulator import SimulatorRail, SimulatorSettings
from rail_sidecars.rails.simulator.store import LedgerTotals, read_totals
from rail_sidecars.runner import SidecarRunner
from rail_sidecars.sdk.notes_grpc import GrpcRailNotes

__all__ = ["LedgerTotals", "Rail", "run_sidecar_command", "simulator_totals", "start_sidecars"]


def start_sidecars(
    settings: Settings,
    *,
    rails: Mapping[str, Rail],
    broker: Broker,
    channel: grpc.aio.Channel,
    token: str,
    stop: asyncio.Event,
) -> list[asyncio.Task[None]]:
    """One in-process sidecar per routed rail: an injected rail (tests), else the rail the rails file
    configures, else the simulator."""
    sim = SimulatorSettings.parse(
        settings.simulator, ledger_path=str(settings.data_dir / "simulator-ledger.db")
    )
    configured = load_rails_config(settings.rails_config).rails if settings.rails_config else {}
    tasks = []
    for rail_name in settings.rails():
        if rail_name in rails:
            rail = rails[rail_name]
        elif rail_name in configured:
            # Notes go to the in-process server over the sidecars' channel, into the same database.
            rail = make_rail(configured[rail_name], notes=GrpcRailNotes(channel, rail=rail_name, token=token))
        else:
            # The runner applies the rate limit, before each claim.
            rail = SimulatorRail(dataclasses.replace(sim, rate_limit=0))
        runner = SidecarRunner(
            rail_name=rail_name,
            rail=rail,
            broker=broker,
            channel=channel,
            token=token,
            sidecar_name=f"embedded-{rail_name}",
            rate_limit=sim.rate_limit if rail_name not in configured else configured[rail_name].rate_limit,
            max_call_s=configured[rail_name].max_call_s if rail_name in configured else 5.0,
        )
        tasks.append(asyncio.create_task(runner.run(stop)))
    return tasks


def run_sidecar_command(argv: Sequence[str]) -> int:
    """`gpo sidecar …`: the gpo-sidecar command."""
    return sidecar_main(argv)


def simulator_totals(ledger: str | Path) -> LedgerTotals:
    """The totals of the simulator rail's ledger file (the demo's check that money moved once)."""
    return read_totals(ledger)
