"""Rate limiting shared by the sidecar runner (applied before a chunk is claimed) and by rails that pace
their own HTTP calls."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """An async token bucket that delays callers so the achieved rate never exceeds `rate` per second.

    Tokens may go negative: a caller takes what it needs at once (so a chunk larger than the bucket still
    passes) and sleeps until the debt is refilled. Reservations are made in call order under a lock, so
    concurrent callers queue fairly and the sleeps happen outside it. `refund` gives back tokens a caller
    reserved and did not use (a claim that left fewer payments to execute).
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

    async def acquire(self, tokens: float) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            await asyncio.sleep(wait)

    def refund(self, tokens: float) -> None:
        if tokens > 0:
            self._tokens = min(self.capacity, self._tokens + tokens)
