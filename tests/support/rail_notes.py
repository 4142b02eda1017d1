"""Rail notes for rail tests: in memory, but yielding to other tasks on each call as a round trip to GPO
would, so two rail instances sharing them can race."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from rail_sidecars.sdk.notes import MemoryRailNotes, RailNote


class InterleavedRailNotes(MemoryRailNotes):
    """Memory notes that let other tasks run before each call; `recorded` keeps every note the rails
    recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[RailNote] = []

    async def record(self, notes: Sequence[RailNote]) -> None:
        await asyncio.sleep(0)
        self.recorded += notes
        await super().record(notes)

    async def for_keys(self, idempotency_keys: Sequence[str]) -> Sequence[RailNote]:
        await asyncio.sleep(0)
        return await super().for_keys(idempotency_keys)
