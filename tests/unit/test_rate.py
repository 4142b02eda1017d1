"""The runner's rate limiter: turns in call order, paid for only with what a turn takes."""

from __future__ import annotations

import asyncio
import time

from rail_sidecars.sdk.rate import TokenBucket


async def test_a_turn_that_takes_nothing_costs_the_next_nothing() -> None:
    bucket = TokenBucket(rate=100)
    await bucket.begin_turn()
    bucket.take(0)  # e.g. a claim that answered SKIP for the whole chunk
    bucket.end_turn()
    started = time.monotonic()
    await bucket.begin_turn()
    bucket.end_turn()
    assert time.monotonic() - started < 0.05


async def test_the_next_turn_waits_for_what_the_previous_took() -> None:
    bucket = TokenBucket(rate=1000)
    await bucket.begin_turn()
    bucket.take(200)
    bucket.end_turn()
    started = time.monotonic()
    await bucket.begin_turn()
    bucket.end_turn()
    assert time.monotonic() - started >= 0.15  # 200 tokens at 1000/s; only a lower bound


async def test_a_caller_cancelled_while_it_waits_leaves_the_queue() -> None:
    bucket = TokenBucket(rate=1000)
    await bucket.begin_turn()
    waiting = asyncio.create_task(bucket.begin_turn())
    await asyncio.sleep(0.01)
    waiting.cancel()  # its delivery was lost
    await asyncio.gather(waiting, return_exceptions=True)
    bucket.take(0)
    bucket.end_turn()
    started = time.monotonic()
    await asyncio.wait_for(bucket.begin_turn(), 1)  # not held by the cancelled caller
    bucket.end_turn()
    assert time.monotonic() - started < 0.05


async def test_turns_hold_the_rate_across_concurrent_callers() -> None:
    # As the runner does for every rail: four chunks of 50 claimed at once, each taking its turn.
    bucket = TokenBucket(rate=1000)

    async def claim(size: int) -> None:
        await bucket.begin_turn()
        bucket.take(size)
        bucket.end_turn()

    started = time.monotonic()
    await asyncio.gather(*(claim(50) for _ in range(4)))
    await claim(0)
    assert time.monotonic() - started >= 0.15  # 200 tokens at 1000/s; only a lower bound
