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
from gpo_kernel.settings import ConfigError
from gpo_server.config import Settings
from rail_sidecars.cli import main as sidecar_main
from rail_sidecars.rails.base import Rail
from rail_sidecars.rails.registry import make_rail
from rail_sidecars.rails.simulator import SimulatorRail, SimulatorSettings
from rail_sidecars.rails.simulator.store import LedgerTotals, read_totals
from rail_sidecars.runner import SidecarRunner
from rail_sidecars.sdk.notes_grpc import GrpcRailNotes

SIMULATOR = "simulator"  # the rail embedded mode runs on the simulator without configuring it

__all__ = ["LedgerTotals", "Rail", "check_rails", "run_sidecar_command", "simulator_totals", "start_sidecars"]


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
    configures, else, for the rail named "simulator" only, the simulator (GPO_SIMULATOR). A routed rail
    that is none of these is a ConfigError before any sidecar starts: a real rail's payments must not
    silently go to the simulator (a rails file can name a rail of kind "simulator" to have that)."""
    sim = SimulatorSettings.parse(
        settings.simulator, ledger_path=str(settings.data_dir / "simulator-ledger.db")
    )
    check_rails(settings, rails)
    configured = settings.rails_file.rails if settings.rails_file is not None else {}
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
            funds=rail_name in configured and configured[rail_name].funds_control,
        )
        tasks.append(asyncio.create_task(runner.run(stop)))
    return tasks


def check_rails(settings: Settings, injected: Mapping[str, Rail]) -> None:
    """ConfigError unless every routed rail is injected, configured in the rails file, or the simulator."""
    configured = settings.rails_file.rails if settings.rails_file is not None else {}
    for name in settings.rails():
        if name not in injected and name not in configured and name != SIMULATOR:
            raise ConfigError(
                f"embedded mode: rail {name!r} is routed but not configured; name it in a rails file"
                f' (GPO_RAILS_CONFIG; kind = "simulator" for the simulator), or route to {SIMULATOR!r}'
            )


def run_sidecar_command(argv: Sequence[str]) -> int:
    """`gpo sidecar …`: the gpo-sidecar command."""
    return sidecar_main(argv)


def simulator_totals(ledger: str | Path) -> LedgerTotals:
    """The totals of the simulator rail's ledger file (the demo's check that money moved once)."""
    return read_totals(ledger)
