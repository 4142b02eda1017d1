"""Rail plugins by kind. Each entry builds a Rail from its RailConfig and the rail's notes (what it must
remember across attempts, kept by GPO: sdk/notes.py); imports stay lazy so a sidecar loads only its own
rail's dependencies. Add one line per new rail."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from gpo_kernel.rails_config import RailConfig
from rail_sidecars.rails.base import Rail
from rail_sidecars.sdk.notes import MemoryRailNotes, RailNotes

# kind -> "module:factory"; the factory takes a RailConfig and `notes: RailNotes` (a keyword, which a rail
# that remembers nothing accepts and ignores) and returns a Rail.
RAIL_KINDS: dict[str, str] = {
    "simulator": "rail_sidecars.rails.simulator:from_config",
    "gsma": "rail_sidecars.rails.gsma:from_config",
    "mojaloop": "rail_sidecars.rails.mojaloop:from_config",
    "iso20022": "rail_sidecars.rails.iso20022:from_config",
    "http-ledger": "rail_sidecars.rails.http_ledger:from_config",  # the conformance kit's rail
}


def make_rail(config: RailConfig, *, notes: RailNotes | None = None) -> Rail:
    """The rail `config` describes. A sidecar passes the notes GPO keeps (notes_grpc.GrpcRailNotes); without
    them (a check that builds a rail without running it) the notes live in memory and die with it."""
    if config.kind not in RAIL_KINDS:
        raise ValueError(f"rail {config.name}: unknown kind {config.kind!r}; known: {sorted(RAIL_KINDS)}")
    module_name, _, factory_name = RAIL_KINDS[config.kind].partition(":")
    factory: Callable[..., Rail] = getattr(importlib.import_module(module_name), factory_name)
    return factory(config, notes=notes if notes is not None else MemoryRailNotes())
