"""The rail's rate limit (its `rate_limit` in the rails file), which the sidecar runner applies to every
rail: a chunk is claimed inside its turn, so no claim waits for the limiter. No rail paces itself."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """An async token bucket that keeps the achieved rate at or below `rate` per second.

    Callers take turns, in call order, under the bucket's lock. A turn begins once the tokens taken in
    earlier turns have been refilled (tokens may go negative: a chunk larger than the bucket still
    passes), and the caller then takes what it uses. The sidecar runner claims inside its turn and takes
    only what the claim left to execute, so a chunk with nothing to do costs no rail time; a caller
    cancelled while it waits (its delivery was lost) leaves the queue without taking anything.
    """

    def __init__(self, rate: float, capacity: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        # A small capacity keeps bursts small: a full bucket of `rate` tokens would let a whole second's
        # worth of payments through instantly after an idle spell.
        self.capacity = max(1.0, capacity)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def begin_turn(self) -> None:
        """Waits for this caller's turn: the lock, then the earlier turns' debt. Pair with end_turn."""
        await self._lock.acquire()
        try:
            self._refill()
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
                self._refill()
        except BaseException:
            self._lock.release()
            raise

    def take(self, tokens: float) -> None:
        """Within a turn: uses `tokens`; the next turn waits until they are refilled."""
        self._tokens -= max(0.0, tokens)

    def end_turn(self) -> None:
        self._lock.release()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
