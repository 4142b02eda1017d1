"""Waiting in the background loops (relay, sweepers, recorders, metrics, webhooks) so that a stop ends the
wait at once instead of after the loop's interval."""

from __future__ import annotations

import asyncio


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    """Returns after `seconds`, or as soon as `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
